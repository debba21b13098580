/**
 * Sign-in tried as a new user would: create the first owner with `stack admin create-owner`,
 * `npm start`, open /login in a real browser and see a clear page (a screenshot is kept under
 * test-artifacts/auth/); then the same MCP-client flow as on the distributed topology, in the
 * one process (embedded Postgres, in-process bus and cache).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { artifactsDir, ensureStackBuilt, startOneProcessStack, type OneProcessStack } from '@stack/testing';
import type { Browser } from 'playwright-core';

import { createOwnerWithCli } from './support/auth-admin';
import { expectOAuthFlow } from './support/auth-checks';
import { launchBrowser, type Member } from './support/auth-client';

const owner: Member = { email: 'founder@example.com', password: 'founder-password-1' };

describe('auth, one process (npm start): a new user signs in', () => {
  let stack: OneProcessStack;
  let browser: Browser;
  let dataDir: string;

  beforeAll(async () => {
    await ensureStackBuilt();
    dataDir = await mkdtemp(join(tmpdir(), 'stack-auth-one-'));
    const out = await createOwnerWithCli({ STACK_DATA_DIR: dataDir }, { ...owner, operatorName: 'Founders' });
    expect(out).toMatch(/Created operator op_\w+ with owner mem_\w+ \(founder@example.com\)/);
    stack = await startOneProcessStack({ viaNpmStart: true, env: { STACK_DATA_DIR: dataDir, STACK_AUTH_SIGNUP: 'open' } });
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('shows a clear, accessible login page with a strict CSP (screenshot in test-artifacts/auth/)', async () => {
    const page = await browser.newPage();
    try {
      const res = await page.goto(`${stack.publicUrl}/login`);
      expect(res?.status()).toBe(200);
      const csp = res?.headers()['content-security-policy'] ?? '';
      expect(csp).toContain("default-src 'none'");
      expect(csp).not.toContain('script-src');
      await expect(page.title()).resolves.toBe('Sign in · STACK');
      await page.getByLabel('Email').waitFor();
      await page.getByLabel('Password').waitFor();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      expect(await page.locator('script').count()).toBe(0);
      await page.screenshot({ path: join(artifactsDir('auth'), 'login-page.png'), fullPage: true });
      // A wrong password is answered on the page, in words.
      await page.getByLabel('Email').fill(owner.email);
      await page.getByLabel('Password').fill('not-the-password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').waitFor();
      expect(await page.getByRole('alert').textContent()).toContain('do not match');
      // The right one signs in.
      await page.getByLabel('Password').fill(owner.password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByText(`You are signed in as ${owner.email}`).waitFor();
    } finally {
      await page.close();
    }
  });

  it('lets a newcomer create a team when sign-up is open, then sign in as its owner', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${stack.publicUrl}/login`);
      await page.getByRole('link', { name: 'Create a team' }).click();
      await page.getByLabel('Team name').fill('Newcomers');
      await page.getByLabel('Email').fill('newcomer@example.com');
      await page.getByLabel(/Password/).fill('newcomer-password-1');
      await page.getByRole('button', { name: 'Create team' }).click();
      await page.getByText('Newcomers is ready and you are its owner').waitFor();
      // The same email cannot sign up twice.
      await page.goto(`${stack.publicUrl}/login/signup`);
      await page.getByLabel('Team name').fill('Again');
      await page.getByLabel('Email').fill('newcomer@example.com');
      await page.getByLabel(/Password/).fill('newcomer-password-1');
      await page.getByRole('button', { name: 'Create team' }).click();
      expect(await page.getByRole('alert').textContent()).toContain('already exists');
    } finally {
      await page.close();
    }
    const result = await expectOAuthFlow(stack.publicUrl, browser, { email: 'newcomer@example.com', password: 'newcomer-password-1' });
    expect(result.memberId).toMatch(/^mem_/);
  });

  it('signs an MCP client in with the owner created on the command line', async () => {
    const result = await expectOAuthFlow(stack.publicUrl, browser, owner);
    expect(result.operatorId).toMatch(/^op_/);
  });
});
