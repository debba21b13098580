import { redirectUriProblem } from './redirect-uri';

describe('redirect URIs a client may register', () => {
  it.each(['https://app.example/cb', 'http://127.0.0.1/callback', 'http://localhost:33418/callback', 'http://[::1]:8000/cb'])('accepts %s', (uri) => {
    expect(redirectUriProblem(uri)).toBeUndefined();
  });

  it.each(['http://app.example/cb', 'http://127.0.0.1.evil.example/cb', 'javascript:alert(1)', 'https://app.example/cb#frag', 'not a url'])('refuses %s', (uri) => {
    expect(redirectUriProblem(uri)).toEqual(expect.any(String));
  });
});
