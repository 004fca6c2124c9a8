// The OpenID provider jitgate's tests sign in against: the certified
// `oidc-provider` package, configured with test clients and users, plus the
// pieces a provider leaves to its host (the sign-in and consent pages) and a
// small admin API for the tests (rotate and retire signing keys, count key
// set fetches). It is the real protocol implementation, not a mock: jitgate
// discovers it, fetches its keys, and people sign in through its pages.
//
//   node idp.mjs [--port N] [--role people|workload] [--id-token-ttl S]
//                [--console-redirect URL]   (another redirect URI of jitgate-console)
//
// Prints one JSON line `{"issuer": "http://127.0.0.1:PORT"}` on stdout when
// it listens. Users (password "pw"; a one-time code "123456" makes the
// sign-in multi-factor: acr "phr", amr ["pwd","otp","mfa"]):
//   alice (groups dev), bob (approvers), carol (dev, oncall), root (admins).
// Clients (role people):
//   jitgate-cli       public, device flow + authorization code with PKCE
//                     (loopback redirect on any port), refresh tokens;
//   jitgate-console   confidential (secret "console-secret"), code + PKCE;
//   other-app         public, code + PKCE: tokens for another audience.
// Clients (role workload, client credentials, JWT access tokens for the
// resource "jitgate-ci"):
//   deploy-bot        secret "deploy-secret", ES256, groups ["deployers"];
//   ed-bot            secret "ed-secret", EdDSA, groups ["deployers", "admins"].
// Admin API (tests only; the provider listens on 127.0.0.1):
//   GET  /admin/stats            {"jwks_requests": n, "discovery_requests": n}
//   POST /admin/rotate           adds a new RS256 signing key, signs with it
//   POST /admin/retire           removes every key but the newest of each alg
//   GET  /admin/rsa-public.pem   the current RS256 public key (SPKI PEM)

import http from 'node:http';
import { createPublicKey } from 'node:crypto';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const port = Number(args.port ?? 0);
const role = args.role ?? 'people';
const idTokenTtl = Number(args['id-token-ttl'] ?? 3600);

const users = {
  alice: { email: 'alice@example.com', groups: ['dev'] },
  bob: { email: 'bob@example.com', groups: ['approvers'] },
  carol: { email: 'carol@example.com', groups: ['dev', 'oncall'] },
  root: { email: 'root@example.com', groups: ['admins'] },
};
const workloads = {
  'deploy-bot': { secret: 'deploy-secret', alg: 'ES256', groups: ['deployers'] },
  'ed-bot': { secret: 'ed-secret', alg: 'EdDSA', groups: ['deployers', 'admins'] },
};

let serial = 0;
async function newKey(alg, crv) {
  serial += 1;
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true, crv });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: `${role}-${alg.toLowerCase()}-${serial}` };
}
// Newest first: the provider signs with the first key of an algorithm.
let keys = [await newKey('RS256'), await newKey('ES256'), await newKey('EdDSA', 'Ed25519')];

const stats = { jwks_requests: 0, discovery_requests: 0 };

function configuration() {
  const people = role === 'people';
  return {
    jwks: { keys },
    cookies: { keys: ['jitgate-test-idp-cookie-key'] },
    clients: people
      ? [
          {
            client_id: 'jitgate-cli',
            token_endpoint_auth_method: 'none',
            application_type: 'native',
            grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'authorization_code', 'refresh_token'],
            response_types: ['code'],
            redirect_uris: ['http://127.0.0.1/callback'],
            // ID tokens carry acr when it is asked for; ask by default.
            default_acr_values: ['pwd'],
          },
          {
            client_id: 'jitgate-console',
            client_secret: 'console-secret',
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            // The console's callback on the README's port, and the test's.
            redirect_uris: [
              'http://localhost:8080/signin/callback',
              ...(args['console-redirect'] ? [args['console-redirect']] : []),
            ],
          },
          {
            client_id: 'other-app',
            token_endpoint_auth_method: 'none',
            application_type: 'native',
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            redirect_uris: ['http://127.0.0.1/callback'],
          },
        ]
      : Object.entries(workloads).map(([id, w]) => ({
          client_id: id,
          client_secret: w.secret,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
        })),
    scopes: ['openid', 'email', 'groups', 'offline_access', 'request'],
    claims: { openid: ['sub', 'acr', 'amr', 'auth_time'], email: ['email', 'email_verified'], groups: ['groups'] },
    // ID tokens carry email and groups (the service reads them from there).
    conformIdTokenClaims: false,
    acrValues: ['pwd', 'phr'],
    enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256', 'EdDSA'] },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: people },
      clientCredentials: { enabled: !people },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: !people,
        defaultResource: () => 'urn:jitgate:ci',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator, client) => ({
          scope: 'request',
          audience: indicator,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: workloads[client.clientId]?.alg ?? 'ES256' } },
        }),
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      const w = workloads[token.clientId];
      return w && !token.accountId ? { groups: w.groups } : undefined;
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: {
      IdToken: () => idTokenTtl,
      AccessToken: () => idTokenTtl,
      DeviceCode: 600,
      Interaction: 600,
      Session: 86400,
      Grant: 86400,
      RefreshToken: 86400,
      AuthorizationCode: 60,
      ClientCredentials: 300,
    },
    findAccount: async (_ctx, id) =>
      users[id] && {
        accountId: id,
        claims: async () => ({ sub: id, email: users[id].email, email_verified: true, groups: users[id].groups }),
      },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  };
}

let issuer;
let provider;
let handler;
function build() {
  provider = new Provider(issuer, configuration());
  provider.proxy = false;
  handler = provider.callback();
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function page(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html><head><title>jitgate test IdP</title></head><body>${body}</body></html>`);
}
function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}
async function form(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

function loginPage(res, uid, params, error) {
  const wants = params.acr_values ? `<p id="acr">requested acr: ${escape(params.acr_values)}</p>` : '';
  page(
    res,
    error ? 400 : 200,
    `<h1>Sign in</h1>${wants}${error ? `<p id="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input type="text" name="login" autofocus/>
<input type="password" name="password"/>
<input type="text" name="otp" placeholder="one-time code (optional)"/>
<button type="submit">Sign in</button></form>`,
  );
}

// The sign-in and consent steps the provider delegates to its host.
async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (action === 'login' && req.method === 'POST') {
    const f = await form(req);
    if (!users[f.login] || f.password !== 'pw') return loginPage(res, uid, params, 'unknown user or wrong password');
    if (f.otp && f.otp !== '123456') return loginPage(res, uid, params, 'wrong one-time code');
    const mfa = f.otp === '123456';
    const wanted = String(params.acr_values ?? '').split(' ').filter(Boolean);
    if (wanted.includes('phr') && !mfa) return loginPage(res, uid, params, 'this sign-in needs a one-time code');
    const login = { accountId: f.login, acr: mfa ? 'phr' : 'pwd', amr: mfa ? ['pwd', 'otp', 'mfa'] : ['pwd'] };
    return provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'login') return loginPage(res, uid, params);
  // First-party test clients: consent is given without a page.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function admin(req, res, path) {
  if (path === '/admin/stats') return json(res, 200, stats);
  if (path === '/admin/rotate' && req.method === 'POST') {
    keys = [await newKey('RS256'), ...keys];
    build();
    return json(res, 200, { kid: keys[0].kid, kids: keys.map((k) => k.kid) });
  }
  if (path === '/admin/retire' && req.method === 'POST') {
    const seen = new Set();
    keys = keys.filter((k) => !seen.has(k.alg) && seen.add(k.alg));
    build();
    return json(res, 200, { kids: keys.map((k) => k.kid) });
  }
  if (path === '/admin/rsa-public.pem') {
    const rsa = keys.find((k) => k.alg === 'RS256');
    const pem = createPublicKey({ key: { kty: rsa.kty, n: rsa.n, e: rsa.e }, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    res.writeHead(200, { 'content-type': 'application/x-pem-file', 'x-kid': rsa.kid });
    return res.end(pem);
  }
  return json(res, 404, { error: 'not_found' });
}

const server = http.createServer(async (req, res) => {
  try {
    const path = new URL(req.url, issuer).pathname;
    if (path === '/jwks') stats.jwks_requests += 1;
    if (path === '/.well-known/openid-configuration') stats.discovery_requests += 1;
    if (path.startsWith('/admin/')) return await admin(req, res, path);
    const m = path.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (m) return await interaction(req, res, m[1], m[2]);
    return handler(req, res);
  } catch (e) {
    console.error(e);
    if (!res.headersSent) page(res, 500, `<p id="error">${escape(e.message)}</p>`);
  }
});
server.listen(port, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  build();
  console.log(JSON.stringify({ issuer, role }));
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
