// A citizen checks sealed documents on the public verify portal, on a
// phone-sized screen, without any certificate. Run by tests/seal.rs.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

const base = process.env.KEXIN_URL;
const shots = process.env.SHOTS;
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
});
let page;
try {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 }, locale: 'zh-CN', ignoreHTTPSErrors: true, isMobile: true, hasTouch: true,
  });
  page = await context.newPage();
  const noSideways = async (what) => {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${what} scrolls sideways by ${overflow}px`);
  };
  await page.goto(`${base}/verify`);
  assert.equal(await page.locator('h1').innerText(), '验证电子印章文件');
  await noSideways('the upload form');
  await page.screenshot({ path: `${shots}/portal-01-form-zh.png`, fullPage: true });

  // A genuine sealed PDF.
  await page.setInputFiles('input[name="pdf"]', process.env.SEALED_PDF);
  await page.click('#verify');
  await page.locator('#verdict').waitFor();
  assert.equal(await page.locator('#verdict').getAttribute('data-verdict'), 'valid');
  assert.equal(await page.locator('#verdict h1').innerText(), '文件真实有效，未被篡改');
  assert.equal(await page.locator('#sealed-by').first().innerText(), process.env.ORGANIZATION);
  assert.match(await page.locator('main').innerText(), /经可信时间戳证明/);
  assert.equal(await page.locator('#reason').innerText(), '文件完整，印章可信，印章证书未被吊销。');
  await noSideways('the report');
  await page.screenshot({ path: `${shots}/portal-02-valid-zh.png`, fullPage: true });

  // The same document changed after sealing.
  await page.goto(`${base}/verify?lang=en`);
  await page.setInputFiles('input[name="pdf"]', process.env.TAMPERED_PDF);
  await page.click('#verify');
  await page.locator('#verdict').waitFor();
  assert.equal(await page.locator('#verdict').getAttribute('data-verdict'), 'invalid');
  assert.equal(await page.locator('#verdict h1').innerText(), 'Not valid');
  assert.equal(await page.locator('#reason').innerText(), 'The file was changed after it was sealed.');
  await page.screenshot({ path: `${shots}/portal-03-tampered-en.png`, fullPage: true });
  // The reasons are in the reader's language, the engine's English detail folded away.
  await page.goto(`${base}/verify?lang=zh-CN`);
  await page.setInputFiles('input[name="pdf"]', process.env.TAMPERED_PDF);
  await page.click('#verify');
  await page.locator('#verdict').waitFor();
  assert.equal(await page.locator('#verdict h1').innerText(), '验证未通过');
  assert.equal(await page.locator('#reason').innerText(), '文件在盖章后被修改过。');
  assert.equal(await page.locator('details.technical summary').first().innerText(), '技术细节（英文）');
  assert.equal(await page.locator('details.technical span').first().isVisible(), false, 'the detail starts folded');
  await noSideways('the Chinese report');
  await page.screenshot({ path: `${shots}/portal-03b-tampered-zh.png`, fullPage: true });

  // A file with its detached signature.
  await page.goto(`${base}/verify`);
  await page.setInputFiles('input[name="content"]', process.env.SIGNED_FILE);
  await page.setInputFiles('input[name="signature"]', process.env.SIGNATURE_FILE);
  await page.click('#verify');
  await page.locator('#verdict').waitFor();
  assert.equal(await page.locator('#verdict').getAttribute('data-verdict'), 'valid');
  await page.screenshot({ path: `${shots}/portal-04-detached-en.png`, fullPage: true });
  console.log('ok');
} catch (e) {
  console.error(e);
  if (page) {
    console.error(page.url(), (await page.content().catch(() => '')).slice(0, 3000));
    await page.screenshot({ path: `${shots}/portal-failure.png`, fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
