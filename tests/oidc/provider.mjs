// A real OpenID provider (npm oidc-provider) on loopback for the company-login tests.
//
//   PORT=... ACCOUNTS=accounts.json node provider.mjs
//
// Prints "ready <issuer>" once it listens. ACCOUNTS is a JSON file {username: {password,
// email, given_name, family_name, groups}}, read again at each sign-in so that a test can
// change someone's groups between two sign-ins. Relying parties register themselves through
// dynamic client registration (POST /reg), so each test server can give its own callback URL.
// Its login page is its own (/interaction/...): a person signs in there with a password.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = () => JSON.parse(readFileSync(process.env.ACCOUNTS, 'utf8'));

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Test IdP: ${title}</title>
</head><body>${body}</body></html>`;
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  cookies: { keys: ['cratos-test-provider'] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'given_name', 'family_name'],
    groups: ['groups'],
  },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    // The default pages load a web font from the internet; these load nothing.
    rpInitiatedLogout: {
      enabled: true,
      logoutSource(ctx, form) {
        ctx.body = page('Sign out', `<h1>Sign out of Test IdP?</h1>${form}
<button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
      },
      postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<h1>Signed out of Test IdP</h1>');
      },
    },
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>Test IdP: ${escape(out.error)}</h1>
<p role="alert">${escape(out.error_description)}</p>`);
  },
  pkce: { required: () => true },
  async findAccount(ctx, username) {
    const account = accounts()[username];
    if (!account) return undefined;
    return {
      accountId: username,
      claims: () => ({
        sub: username,
        preferred_username: username,
        email: account.email,
        email_verified: true,
        given_name: account.given_name,
        family_name: account.family_name,
        groups: account.groups,
      }),
    };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

function loginPage(res, uid, error) {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(page('Sign in', `<h1>Test IdP</h1>
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<label for="username">Username</label><input id="username" name="username" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password">
<button type="submit">Log in</button>
</form>`));
}

async function formOf(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

// Signs the person in and grants the client what it asked for at once: no consent page.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') return loginPage(res, details.uid);
  const form = await formOf(req);
  const username = form.get('username');
  const account = accounts()[username];
  if (!account || account.password !== form.get('password')) {
    return loginPage(res, details.uid, 'Invalid username or password.');
  }
  const grant = new provider.Grant({ accountId: username, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  return provider.interactionFinished(
    req,
    res,
    { login: { accountId: username }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const handle = provider.callback();
const server = http.createServer((req, res) => {
  if (!req.url.startsWith('/interaction/')) return handle(req, res);
  return interaction(req, res).catch((error) => {
    res.writeHead(400, { 'Content-Type': 'text/plain' });
    res.end(`${error.name}: ${error.message}`);
  });
});
server.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
