// Officers use the Kexin console in Debian's Chromium, signed in with the
// client certificates of their PKCS#12 files. Run by tests/console.rs, which
// prepares the CA, the officers and a pending enrollment, then checks the
// effects through the API and openssl. Fails (exit 1) on the first broken
// expectation; screenshots go to $SHOTS.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';

const base = process.env.KEXIN_URL;
const shots = process.env.SHOTS;
const password = process.env.P12_PASSWORD;
const requestId = process.env.REQUEST_ID;
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
});

const contexts = [];
async function contextFor(p12, viewport = { width: 1280, height: 900 }, locale = 'en-US') {
  const clientCertificates = p12 ? [{ origin: base, pfxPath: p12, passphrase: password }] : [];
  // Playwright's client-certificate proxy does not take a trust anchor;
  // the server certificate's chain is checked by curl and openssl in the
  // Rust tests, so here it is not checked again.
  const context = await browser.newContext({ clientCertificates, viewport, locale, ignoreHTTPSErrors: true });
  contexts.push(context);
  return context;
}

async function signIn(page, path = '/console') {
  await page.goto(base + path);
  assert.match(page.url(), /\/console\/login/, 'an unauthenticated session goes to sign-in');
  await page.click('#login');
  await page.waitForLoadState();
}

async function shot(page, name) {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

const results = {};
try {
  // 1. An RA officer signs in, sees the enrollment waiting for him and approves it.
  const bob = await contextFor(process.env.BOB_P12);
  const page = await bob.newPage();
  await signIn(page);
  assert.equal(await page.locator('h1').innerText(), 'Dashboard');
  const pendingLink = page.locator(`table a[href="/console/requests/${requestId}"]`);
  assert.equal(await pendingLink.count(), 1, 'the pending enrollment is on the dashboard');
  await page.locator('svg[role="img"]').waitFor();
  await shot(page, '01-dashboard');
  await pendingLink.click();
  await page.waitForURL(`**/console/requests/${requestId}`);
  assert.match(await page.locator('#id-number').innerText(), /^110\*+2X$/, 'the ID number is masked');
  await shot(page, '02-request');
  await page.click('#approve');
  await page.locator('#delivery').waitFor();
  const secret = await page.locator('#one-time-secret').innerText();
  assert.match(secret, /^[A-Z2-9]{20}$/);
  assert.match(await page.locator('h1').innerText(), /issued/);
  const download = page.locator('#delivery a[download]');
  assert.match(await download.getAttribute('href'), /^data:application\/x-pkcs12;base64,/);
  await shot(page, '03-approved-with-delivery');
  // Reloading the request does not show the key again.
  await page.goto(`${base}/console/requests/${requestId}`);
  assert.equal(await page.locator('#delivery').count(), 0, 'the key delivery was shown twice');
  const certLinks = await page.locator('dd.mono a[href^="/console/certificates/"]').all();
  assert.equal(certLinks.length, 2, 'signing and encryption certificates');
  const signSerial = (await certLinks[0].getAttribute('href')).split('/').pop();
  results.signSerial = signSerial;
  results.encSerial = (await certLinks[1].getAttribute('href')).split('/').pop();

  // 2. He revokes the signing certificate; the page shows the new status and OCSP says revoked.
  await certLinks[0].click();
  await page.waitForURL(`**/console/certificates/${signSerial}`);
  assert.equal(await page.locator('#cert-status').innerText(), 'issued');
  assert.match(await page.locator('#ocsp-answer').innerText(), /^good/);
  await page.selectOption('#revoke-reason', 'keyCompromise');
  await page.click('#revoke');
  await page.waitForURL(`**/console/certificates/${signSerial}`);
  assert.equal(await page.locator('#cert-status').innerText(), 'revoked');
  assert.match(await page.locator('#ocsp-answer').innerText(), /^revoked/);
  await shot(page, '04-revoked');

  // 3. A form posted with a wrong CSRF token is refused.
  const forged = await page.request.post(`${base}/console/certificates/${results.encSerial}/status`, {
    form: { csrf: 'not-the-token', action: 'hold' },
    headers: { Origin: base },
  });
  assert.equal(forged.status(), 403, 'a forged form was accepted');

  // 4. An RA officer cannot reach ra-admin pages, nor see them in the menu.
  assert.equal(await page.locator('header nav a[href="/console/officers"]').count(), 0);
  const refused = await page.goto(`${base}/console/officers`);
  assert.equal(refused.status(), 403);
  await shot(page, '05-ra-officer-refused');
  const audit = await page.goto(`${base}/console/audit`);
  assert.equal(audit.status(), 403, 'an ra-officer read the audit log');
  assert.equal((await page.goto(`${base}/console/clients`)).status(), 403, 'an ra-officer saw client systems');
  assert.equal((await page.goto(`${base}/console/acme`)).status(), 403, 'an ra-officer saw ACME keys');

  // 5. The same pages in Chinese, at phone width, without horizontal scrolling.
  const phone = await contextFor(process.env.BOB_P12, { width: 390, height: 844 }, 'zh-CN');
  const mobile = await phone.newPage();
  await signIn(mobile);
  assert.equal(await mobile.locator('h1').innerText(), '工作台');
  const overflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the dashboard scrolls sideways by ${overflow}px on a phone`);
  await shot(mobile, '06-phone-dashboard-zh');
  await mobile.goto(`${base}/console/certificates/${signSerial}`);
  const overflow2 = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow2 <= 0, `the certificate page scrolls sideways by ${overflow2}px on a phone`);
  await shot(mobile, '07-phone-certificate-zh');
  await mobile.click('text=English');
  assert.equal(await mobile.locator('h1').innerText(), 'Dashboard');
  await phone.close();

  // 6. The ra-admin manages officers and reads the audit log with its chain verified.
  const rita = await contextFor(process.env.RITA_P12);
  const admin = await rita.newPage();
  await signIn(admin, '/console/officers');
  assert.match(admin.url(), /\/console\/officers$/, 'sign-in returns to the page asked for');
  await admin.fill('input[name="name"]', 'dora');
  await admin.selectOption('select[name="role"]', 'auditor');
  await admin.click('#add-officer');
  await admin.locator('#delivery').waitFor();
  assert.match(await admin.locator('#one-time-secret').innerText(), /^[A-Z2-9]{20}$/);
  assert.equal(await admin.locator('td', { hasText: 'dora' }).count(), 1);
  await shot(admin, '08-officers');
  // The ra-admin registers a client system for single sign-on; its secret
  // is shown once, and the audit log below records the registration.
  await admin.goto(`${base}/console/clients`);
  await admin.fill('input[name="name"]', '不动产登记系统');
  await admin.fill('textarea[name="redirect_uris"]', 'https://bdc.example.gov.cn/callback\nhttps://bdc.example.gov.cn/cb2');
  await admin.click('#register-client');
  await admin.locator('#delivery').waitFor();
  const clientId = await admin.locator('#client-id').innerText();
  assert.match(clientId, /^kx-/);
  assert.ok((await admin.locator('#client-secret').innerText()).length >= 32);
  assert.equal(await admin.locator('#clients td', { hasText: clientId }).count(), 1);
  await shot(admin, '08b-clients');
  await admin.goto(`${base}/console/clients`);
  assert.equal(await admin.locator('#client-secret').count(), 0, 'the secret is not shown again');
  await admin.fill('input[name="name"]', 'bad');
  await admin.fill('textarea[name="redirect_uris"]', 'http://evil.example/cb');
  const badResponse = admin.waitForResponse((r) => r.url().endsWith('/console/clients') && r.request().method() === 'POST');
  await admin.click('#register-client');
  assert.equal((await badResponse).status(), 400);
  // The ra-admin issues an ACME external account key for a system; the
  // HMAC key is shown once, and the list shows the key as not yet bound.
  await admin.goto(`${base}/console/acme`);
  await admin.fill('input[name="name"]', '政务服务门户');
  await admin.click('#issue-eab');
  await admin.locator('#delivery').waitFor();
  const eabKid = await admin.locator('#eab-kid').innerText();
  assert.match(await admin.locator('#eab-hmac-key').innerText(), /^[A-Za-z0-9_-]{43}$/);
  assert.equal(await admin.locator('#eab-keys td', { hasText: eabKid }).count(), 1);
  await shot(admin, '08c-acme');
  await admin.goto(`${base}/console/acme`);
  assert.equal(await admin.locator('#eab-hmac-key').count(), 0, 'the HMAC key is shown again');
  assert.equal(await admin.locator('#eab-keys td', { hasText: '政务服务门户' }).count(), 1);
  // The same page in Chinese at phone width: no sideways scrolling.
  const ritaPhone = await contextFor(process.env.RITA_P12, { width: 390, height: 844 }, 'zh-CN');
  const acmePhone = await ritaPhone.newPage();
  await signIn(acmePhone);
  await acmePhone.goto(`${base}/console/acme`);
  assert.equal(await acmePhone.locator('h1').innerText(), 'ACME 自动签发');
  const acmeOverflow = await acmePhone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(acmeOverflow <= 0, `the ACME page scrolls sideways by ${acmeOverflow}px on a phone`);
  await shot(acmePhone, '08d-phone-acme-zh');
  // The service certificates at phone width: each row's status in view,
  // without scrolling the table sideways.
  await acmePhone.goto(`${base}/console/services`);
  assert.equal(await acmePhone.locator('h1').innerText(), '服务证书');
  assert.equal(await acmePhone.locator('#service-certificates tbody tr').count(), 10);
  const hidden = await acmePhone.evaluate(() => {
    const table = document.querySelector('#service-certificates').parentElement;
    return table.scrollWidth - table.clientWidth;
  });
  assert.ok(hidden <= 0, `the service certificates table scrolls sideways by ${hidden}px on a phone`);
  assert.equal(await acmePhone.locator('#service-certificates .badge.current').count(), 10);
  await shot(acmePhone, '08e-phone-services-zh');
  await ritaPhone.close();
  await admin.goto(`${base}/console/audit`);
  await admin.click('#verify-chain');
  assert.match(await admin.locator('#chain-status').innerText(), /^Chain intact/);
  assert.ok(await admin.locator('td code', { hasText: 'request.approve' }).count() >= 1);
  assert.ok(await admin.locator('td code', { hasText: 'client.add' }).count() >= 1);
  assert.ok(await admin.locator('td code', { hasText: 'acme.external_account' }).count() >= 1);
  await shot(admin, '09-audit');
  // Signing out ends the session: the next page asks to sign in again.
  await admin.click('header button.link');
  await admin.goto(`${base}/console/audit`);
  assert.match(admin.url(), /\/console\/login/);

  // 7. A seal-admin asks for a new seal with its own image; the seal
  // exists only after two registration officers other than her approved.
  const sam = await contextFor(process.env.SAM_P12);
  const samPage = await sam.newPage();
  await signIn(samPage, '/console/seals');
  await samPage.click('details.new-seal summary');
  await samPage.fill('#seal-name', '某某局合同专用章');
  await samPage.fill('#seal-organization', '某某局');
  await samPage.fill('#seal-uscc', '91350100M000100Y43');
  await samPage.selectOption('#seal-kind', 'contract');
  await samPage.setInputFiles('input[name="image"]', process.env.SEAL_PNG);
  await shot(samPage, '11-seal-form');
  await samPage.click('#request-seal');
  await samPage.waitForURL(/\/console\/requests\/\d+$/);
  const sealRequest = samPage.url().split('/').pop();
  results.sealRequest = sealRequest;
  assert.match(await samPage.locator('h1').innerText(), /submitted/);
  assert.equal(await samPage.locator('img.seal-image').count(), 1, 'approvers see the seal image');
  assert.equal(await samPage.locator('#approve').count(), 0, 'the submitter cannot approve');
  await shot(samPage, '12-seal-requested');
  await page.goto(`${base}/console/requests/${sealRequest}`);
  await page.click('#approve');
  await page.locator('li', { hasText: 'bob' }).waitFor();
  assert.match(await page.locator('h1').innerText(), /submitted/, 'one approval is not enough');
  assert.equal(await page.locator('#approve').count(), 0, 'an officer approves once');
  const rita2 = await contextFor(process.env.RITA_P12);
  const second = await rita2.newPage();
  await signIn(second, `/console/requests/${sealRequest}`);
  await second.click('#approve');
  await second.locator('h1', { hasText: 'issued' }).waitFor();
  await shot(second, '13-seal-approved');
  await samPage.goto(`${base}/console/seals`);
  assert.equal(await samPage.locator('dd.seal-name', { hasText: '某某局合同专用章' }).count(), 1);
  await shot(samPage, '14-seals');
  // The seal-admin asks for the renewal of the new seal's certificate.
  await samPage.click('button.renew');
  await samPage.waitForURL(/\/console\/requests\/\d+$/);
  assert.match(await samPage.locator('h1').innerText(), /^Renew/, 'a renew request');
  assert.match(await samPage.locator('h1').innerText(), /submitted/, 'awaiting approval');
  await shot(samPage, '14b-seal-renewal-requested');

  // 8. Without a client certificate the console gives nothing.
  const anonymous = await contextFor(null);
  const nobody = await anonymous.newPage();
  const denied = await nobody.goto(`${base}/console`);
  assert.equal(denied.status(), 401);
  await shot(nobody, '10-no-certificate');

  writeFileSync(`${shots}/results.json`, JSON.stringify(results));
  console.log(JSON.stringify(results));
} catch (e) {
  console.error(e);
  process.exitCode = 1;
  // What each open page showed when the expectation broke.
  let n = 0;
  for (const context of contexts) {
    for (const p of context.pages()) {
      console.error(`page ${n}: ${p.url()}\n${(await p.content().catch(() => '')).slice(0, 2000)}`);
      await p.screenshot({ path: `${shots}/failure-${n++}.png`, fullPage: true }).catch(() => {});
    }
  }
} finally {
  await browser.close();
}
