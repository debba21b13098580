import { redirectTarget, redirectUriProblem } from './redirect-uri';

describe('redirect URIs a client may register', () => {
  it.each([
    'https://app.example/cb',
    'http://127.0.0.1/callback',
    'http://localhost:33418/callback',
    'http://[::1]:8000/cb',
    // An app's own scheme (RFC 8252 §7.1), as editors with MCP clients register them.
    'com.example.app:/oauth2redirect',
    'cursor://anysphere.cursor-retrieval/oauth/user-stack/callback',
    'vscode://vscode.mcp/callback',
  ])('accepts %s', (uri) => {
    expect(redirectUriProblem(uri)).toBeUndefined();
  });

  it.each([
    'http://app.example/cb',
    'http://127.0.0.1.evil.example/cb',
    'javascript:alert(1)',
    'JavaScript:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    'vbscript:msgbox(1)',
    'file:///etc/passwd',
    'blob:https://app.example/1',
    'ws://127.0.0.1/cb',
    'mailto:a@example.com',
    'intent://scan/#Intent;scheme=zxing;end',
    'https://app.example/cb#frag',
    'https://user:pass@app.example/cb',
    'com.example.app:/cb#frag',
    'not a url',
  ])('refuses %s', (uri) => {
    expect(redirectUriProblem(uri)).toEqual(expect.any(String));
  });

  it('names where a code goes on the consent page: a web host, or an app scheme with its path', () => {
    expect(redirectTarget('https://app.example:8443/cb?x=1')).toBe('app.example:8443');
    expect(redirectTarget('http://127.0.0.1:33418/callback')).toBe('127.0.0.1:33418');
    expect(redirectTarget('cursor://anysphere.cursor-retrieval/oauth/callback?x=1')).toBe('cursor://anysphere.cursor-retrieval/oauth/callback');
    expect(redirectTarget('com.example.app:/oauth2redirect')).toBe('com.example.app:/oauth2redirect');
  });
});
