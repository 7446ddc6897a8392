// Single sign-on across two relying systems (the SDK's example app), and
// single logout, in Chromium with an official's client certificate.
// Run by tests/identity.rs.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

const kexin = process.env.KEXIN_URL;
const [a, b] = [process.env.SYSTEM_A, process.env.SYSTEM_B];
const shots = process.env.SHOTS;
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
});
let page;
try {
  const context = await browser.newContext({
    clientCertificates: [{ origin: kexin, pfxPath: process.env.OFFICIAL_P12, passphrase: process.env.P12_PASSWORD }],
    ignoreHTTPSErrors: true,
    viewport: { width: 1024, height: 700 },
  });
  page = await context.newPage();
  let signInPages = 0;
  page.on('response', (r) => {
    if (r.url().startsWith(`${kexin}/oidc/authorize`) && r.request().method() === 'GET' && r.status() === 200) signInPages += 1;
  });

  // System A: not signed in → Kexin → confirm with the certificate → back.
  await page.goto(`${a}/`);
  await page.locator('#sign-in').waitFor();
  await page.screenshot({ path: `${shots}/sso-01-sign-in.png` });
  await page.click('#sign-in');
  await page.locator('#greeting').waitFor();
  assert.match(await page.locator('#greeting').innerText(), /档案系统 — 欢迎 zhang-san/);
  assert.equal(signInPages, 1);
  await page.screenshot({ path: `${shots}/sso-02-system-a.png` });

  // System B: single sign-on, no sign-in page.
  await page.goto(`${b}/`);
  await page.locator('#greeting').waitFor();
  assert.match(await page.locator('#greeting').innerText(), /审批系统 — 欢迎 zhang-san/);
  assert.equal(signInPages, 1, 'system B asked to sign in again');
  await page.screenshot({ path: `${shots}/sso-03-system-b-sso.png` });

  // Sign out on A ends the session on B too, at once: Kexin posts a
  // back-channel logout token to B before the browser leaves.
  await page.goto(`${a}/`);
  await page.click('#logout');
  await page.locator('#bye').waitFor();
  await page.goto(`${b}/`);
  await page.locator('#sign-in').waitFor();
  assert.equal(signInPages, 2, 'system B kept its session after single logout');
  await page.screenshot({ path: `${shots}/sso-04-after-logout.png` });
  console.log('ok');
} catch (e) {
  console.error(e);
  if (page) {
    console.error(page.url(), (await page.content().catch(() => '')).slice(0, 2000));
    await page.screenshot({ path: `${shots}/sso-failure.png` }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
