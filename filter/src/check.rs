//! The decision for one request, as plain Rust: headers in, a [`Plan`] out.
//!
//! The proxy-wasm glue only gathers the request's headers, asks this module
//! what to do, and carries the plan out. Everything the host must be asked
//! lazily (client address, peer certificate) sits behind [`RequestHost`], so
//! the whole decision is tested natively without a proxy.

use core::net::IpAddr;
use std::borrow::Cow;
use std::rc::Rc;

use grant::{check_request, decide_checked, GrantVerifier, Identity, Outcome, Peer, Request, VerifiedGrant, Verifier};

use crate::cache::GrantCache;
use crate::config::{FilterConfig, IdentitySource, Mode, Unmatched};
use crate::headers::{header_safe, HeaderMap};
use crate::jsonw;
use crate::route::route;
use crate::sync::Live;

/// Prefix of the headers this filter owns. Any that arrive from outside are
/// removed, so upstreams can trust what they see.
pub const JIT_HEADER_PREFIX: &[u8] = b"x-jit-";

/// The body of the fail-closed answer (503) both adapters give when they
/// cannot decide a request (host error, internal error).
pub const UNAVAILABLE_BODY: &str =
    r#"{"error":"gateway_unavailable","message":"The access gateway cannot check this request.","resource":null}"#;

/// What the host can tell about the connection, asked only when needed.
pub trait RequestHost {
    /// The client's address.
    fn source_address(&self) -> Option<IpAddr>;
    /// The URI SAN of the client's mTLS certificate.
    fn peer_uri_san(&self) -> Option<Vec<u8>>;
    /// The SHA-256 digest of the client's mTLS certificate (DER), for
    /// grants bound to it (`cnf`).
    fn peer_certificate_sha256(&self) -> Option<[u8; 32]>;
}

/// The connection facts `grant` asks for, read from the host only when a
/// grant needs them (each is a host call).
struct HostPeer<'h>(&'h dyn RequestHost);

impl Peer for HostPeer<'_> {
    fn source(&self) -> Option<IpAddr> {
        self.0.source_address()
    }

    fn client_cert(&self) -> Option<[u8; 32]> {
        self.0.peer_certificate_sha256()
    }
}

/// Parses the host's SHA-256 digest of the peer certificate (Envoy's
/// `connection.sha256_peer_certificate_digest`: 64 hex digits, either case).
/// `None` for anything else, which a bound grant then refuses.
pub fn parse_certificate_digest(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let nibble = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *byte = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(out)
}

/// The worker's grant cache in front of the configured verifier, so that
/// `grant::decide_checked` (and with it the spec's order of checks) decides
/// every request, cached or not.
struct Cached<'a> {
    cache: &'a GrantCache,
    verifier: &'a Verifier,
}

impl GrantVerifier for Cached<'_> {
    type Grant = Rc<VerifiedGrant>;

    fn verify_grant(&self, token: &[u8], now: u64) -> Result<Rc<VerifiedGrant>, Outcome> {
        self.cache.verify(self.verifier, token, now)
    }
}

/// What the filter decided, beyond the grant outcomes of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A grant outcome (including [`Outcome::Allowed`]).
    Grant(Outcome),
    /// The request matches no resource and unmatched traffic is denied.
    NoResource,
    /// The request matches no resource and unmatched traffic is allowed.
    Unprotected,
    /// Strict mode: the revocation list is older than allowed.
    RevocationsStale,
    /// The authority is not a plain `host[:port]`: it cannot be routed.
    AuthorityRejected,
}

impl Verdict {
    /// Stable code, as in deny bodies and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Verdict::Grant(o) => o.code(),
            Verdict::NoResource => "no_resource",
            Verdict::Unprotected => "unprotected",
            Verdict::RevocationsStale => "revocations_stale",
            Verdict::AuthorityRejected => "authority_rejected",
        }
    }

    /// HTTP status of a denial.
    pub fn status(self) -> u16 {
        match self {
            Verdict::Grant(o) => o.status(),
            Verdict::NoResource => 403,
            Verdict::Unprotected => 200,
            Verdict::RevocationsStale => 503,
            Verdict::AuthorityRejected => 400,
        }
    }

    /// Human sentence.
    pub fn message(self) -> &'static str {
        match self {
            Verdict::Grant(o) => o.message(),
            Verdict::NoResource => "This gateway protects no API at this host and path.",
            Verdict::Unprotected => "Not a protected resource.",
            Verdict::RevocationsStale => {
                "The gateway cannot confirm that grants are still valid: its revocation list is out of date."
            }
            Verdict::AuthorityRejected => "The request's host is not a valid host name with an optional port.",
        }
    }

    /// Whether the request may go upstream (ignoring dry-run).
    pub fn passes(self) -> bool {
        matches!(self, Verdict::Grant(Outcome::Allowed) | Verdict::Unprotected)
    }
}

/// The full result of evaluating one request.
#[derive(Debug)]
pub struct Evaluation {
    /// The decision.
    pub verdict: Verdict,
    /// The resource the request was routed to.
    pub resource: Option<usize>,
    /// The verified grant, when verification succeeded (shared with the
    /// worker's cache).
    pub grant: Option<Rc<VerifiedGrant>>,
    /// Whether the grant came in `Authorization: Bearer`.
    pub grant_in_authorization: bool,
}

/// Where the grant was found.
enum Found<'a> {
    None,
    One { token: &'a [u8], in_authorization: bool },
    Several,
}

fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| trim(value.get(7..).unwrap_or(&[])))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or(&[])
}

/// Finds the grant. Two or more candidates (repeated headers, or header and
/// `Authorization` both) are refused rather than picking one, so a proxy
/// and an upstream can never disagree about which grant was checked.
fn find_grant<'a>(cfg: &FilterConfig, headers: &'a HeaderMap) -> Found<'a> {
    let mut found = Found::None;
    let mut count = 0;
    for (name, value) in headers.iter() {
        let candidate = if name == cfg.grant_header.as_bytes() {
            Some((trim(value), false))
        } else if cfg.accept_bearer && name == b"authorization" {
            bearer(value).map(|t| (t, true))
        } else {
            None
        };
        if let Some((token, in_authorization)) = candidate {
            if token.is_empty() && !in_authorization {
                // An empty grant header is no grant (spec vector "empty grant").
                continue;
            }
            count += 1;
            found = Found::One {
                token,
                in_authorization,
            };
        }
    }
    if count > 1 {
        Found::Several
    } else {
        found
    }
}

/// Evaluates one request against the configuration and what this worker
/// has synced (`now_ms`: milliseconds since the epoch).
///
/// The path checked is the `:path` pseudo-header as the host will forward
/// it; headers such as `x-envoy-original-path` are never consulted.
pub fn evaluate(
    cfg: &FilterConfig,
    headers: &HeaderMap,
    host: &dyn RequestHost,
    now_ms: u64,
    live: &Live,
) -> Evaluation {
    let single = |name: &[u8]| headers.single(name).unwrap_or(&[]);
    let path = single(b":path");
    let authority = single(b":authority");
    let method = single(b":method");
    let routed = route(&cfg.resources, authority, path);
    let resource = routed.unwrap_or(None);
    let done = |verdict, grant, in_auth| Evaluation {
        verdict,
        resource,
        grant,
        grant_in_authorization: in_auth,
    };
    let now = now_ms / 1000;

    let Ok(checked_path) = grant::path::check_request_path(path) else {
        return done(Verdict::Grant(Outcome::PathRejected), None, false);
    };
    if routed.is_err() {
        return done(Verdict::AuthorityRejected, None, false);
    }
    let Some(index) = resource else {
        return match cfg.unmatched {
            Unmatched::Deny => done(Verdict::NoResource, None, false),
            Unmatched::Allow => done(Verdict::Unprotected, None, false),
        };
    };
    let resource_id = cfg.resources.get(index).map_or("", |r| r.id.as_str());
    // No control link: no revocation list is expected (grants end at exp).
    if let Some(link) = &cfg.control {
        if crate::poll::revocations_stale(link, live.synced_at_ms, now_ms) {
            return done(Verdict::RevocationsStale, None, false);
        }
    }

    let peer_identity;
    let identity = match &cfg.identity {
        None => Identity::NotConfigured,
        Some(IdentitySource::Header(name)) => match headers.single(name.as_bytes()) {
            Some(v) if !v.is_empty() => Identity::Value(v),
            _ => Identity::Absent,
        },
        Some(IdentitySource::PeerUriSan) => {
            peer_identity = host.peer_uri_san();
            match &peer_identity {
                Some(v) if !v.is_empty() => Identity::Value(v),
                _ => Identity::Absent,
            }
        }
    };
    let peer = HostPeer(host);
    let request = Request {
        method,
        path,
        resource: resource_id,
        identity,
        peer: &peer,
    };

    let (token, in_auth) = match find_grant(cfg, headers) {
        Found::Several => return done(Verdict::Grant(Outcome::GrantMalformed), None, false),
        Found::One {
            token,
            in_authorization,
        } => (Some(token), in_authorization),
        Found::None => match identity {
            Identity::Value(caller) if cfg.identity_aware => {
                return identity_aware(cfg, caller, checked_path, &request, now, live).map_or_else(
                    || done(Verdict::Grant(Outcome::GrantMissing), None, false),
                    |(outcome, grant)| done(Verdict::Grant(outcome), Some(grant), false),
                );
            }
            _ => (None, false),
        },
    };
    let cached = Cached {
        cache: &live.cache,
        verifier: &cfg.verifier,
    };
    let decision = decide_checked(&cached, token, checked_path, &request, now, &live.revoked);
    done(Verdict::Grant(decision.outcome), decision.grant, in_auth)
}

/// Identity-aware mode, no grant sent: the newest synced grant of this
/// caller for this resource that allows the request; otherwise the newest
/// one's reason for refusing; `None` when the caller holds no grant here.
fn identity_aware(
    cfg: &FilterConfig,
    caller: &[u8],
    path: grant::CheckedPath<'_>,
    request: &Request<'_>,
    now: u64,
    live: &Live,
) -> Option<(Outcome, Rc<VerifiedGrant>)> {
    let mut first_refusal = None;
    for grant in live.grants.lookup(caller, request.resource) {
        let outcome = match cfg.verifier.check_time(grant, now) {
            Ok(()) => check_request(grant, path, request, &live.revoked),
            Err(outcome) => outcome,
        };
        if outcome == Outcome::Allowed {
            return Some((outcome, Rc::new(grant.clone())));
        }
        first_refusal.get_or_insert((outcome, grant));
    }
    first_refusal.map(|(outcome, grant)| (outcome, Rc::new(grant.clone())))
}

/// One line for a denial, logged at debug level by both adapters.
pub fn describe_denial(cfg: &FilterConfig, eval: &Evaluation) -> String {
    let resource = eval
        .resource
        .and_then(|i| cfg.resources.get(i))
        .map_or("-", |r| r.id.as_str());
    match &eval.grant {
        Some(g) => format!(
            "jitgate: deny {} resource={resource} grant={} sub={}",
            eval.verdict.code(),
            g.jti(),
            g.sub()
        ),
        None => format!("jitgate: deny {} resource={resource}", eval.verdict.code()),
    }
}

/// What the glue must do with the request. A forward plan borrows the
/// header names from the request and the values from the grant, so
/// carrying out an allowed request allocates nothing more.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan<'a> {
    /// Send it upstream after removing these headers and then adding these
    /// (none of the added names is left on the request after the removal).
    Forward {
        /// Header names to remove.
        remove: Vec<&'a [u8]>,
        /// Headers to add.
        add: Vec<(&'static str, Cow<'a, [u8]>)>,
    },
    /// Answer locally; the upstream never sees the request.
    Deny {
        /// HTTP status.
        status: u16,
        /// Response headers.
        headers: Vec<(&'static str, String)>,
        /// JSON body.
        body: String,
    },
}

/// The headers this filter sets on an allowed request.
pub const SET_HEADERS: [&str; 3] = ["x-jit-subject", "x-jit-grant-id", "x-jit-request-id"];

/// Turns an evaluation into what the glue does.
pub fn plan<'a>(cfg: &FilterConfig, headers: &'a HeaderMap, eval: &'a Evaluation) -> Plan<'a> {
    let enforce = cfg.mode == Mode::Enforce;
    if enforce && !eval.verdict.passes() {
        return deny(cfg, eval);
    }
    // Sized for the usual request (the grant header, perhaps a spoofed
    // identity header or two), so the plan is two allocations, not a regrow
    // per push: the allocator is a large share of the filter's work in the VM.
    let mut remove: Vec<&[u8]> = Vec::with_capacity(4);
    for (name, _) in headers.iter() {
        let ours = name.starts_with(JIT_HEADER_PREFIX) || name == cfg.grant_header.as_bytes();
        if ours && !remove.contains(&name) {
            remove.push(name);
        }
    }
    if eval.grant_in_authorization {
        remove.push(b"authorization");
    }
    let mut add = Vec::with_capacity(SET_HEADERS.len());
    if let (Verdict::Grant(Outcome::Allowed), Some(g)) = (eval.verdict, &eval.grant) {
        let [subject, grant_id, request_id] = SET_HEADERS;
        let wanted = cfg.identity_headers;
        if wanted.subject {
            add.push((subject, header_safe(g.sub().as_bytes())));
        }
        if wanted.grant_id {
            add.push((grant_id, header_safe(g.jti().as_bytes())));
        }
        if let Some(req) = g.req().filter(|_| wanted.request_id) {
            add.push((request_id, header_safe(req.as_bytes())));
        }
    }
    Plan::Forward { remove, add }
}

fn deny(cfg: &FilterConfig, eval: &Evaluation) -> Plan<'static> {
    let verdict = eval.verdict;
    let resource = eval.resource.and_then(|i| cfg.resources.get(i)).map(|r| r.id.as_str());
    let mut body = String::with_capacity(256);
    body.push_str(r#"{"error":"#);
    jsonw::push_str(&mut body, verdict.code());
    body.push_str(r#","message":"#);
    jsonw::push_str(&mut body, verdict.message());
    body.push_str(r#","resource":"#);
    match resource {
        Some(id) => jsonw::push_str(&mut body, id),
        None => body.push_str("null"),
    }
    if let Some(url) = &cfg.request_access_url {
        body.push_str(r#","request_access":"#);
        jsonw::push_str(&mut body, url);
    }
    body.push('}');
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("cache-control", "no-store".to_owned()),
    ];
    if verdict.status() == 401 {
        let challenge = if verdict == Verdict::Grant(Outcome::GrantMissing) {
            r#"Bearer realm="jitgate""#.to_owned()
        } else {
            format!(
                r#"Bearer realm="jitgate", error="invalid_token", error_description="{}""#,
                verdict.code()
            )
        };
        headers.push(("www-authenticate", challenge));
    }
    Plan::Deny {
        status: verdict.status(),
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use grant::{mint, GrantClaims, ScopeRule, SigningKey};

    const KEY: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";
    const NOW: u64 = 1_780_000_000;

    struct Host {
        source: Option<IpAddr>,
        san: Option<Vec<u8>>,
        cert: Option<[u8; 32]>,
    }

    impl RequestHost for Host {
        fn source_address(&self) -> Option<IpAddr> {
            self.source
        }
        fn peer_uri_san(&self) -> Option<Vec<u8>> {
            self.san.clone()
        }
        fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
            self.cert
        }
    }

    const HOST: Host = Host {
        source: None,
        san: None,
        cert: None,
    };

    fn cfg(extra: &str) -> FilterConfig {
        config::parse(
            format!(
                r#"{{"issuer":"jit-control","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"payments-api","path_prefix":"/v1"}}],"request_access_url":"http://jit.example/request"{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn token(sub: &str, src: Option<Vec<String>>) -> String {
        let key = SigningKey::from_base64url("k1", KEY).unwrap();
        mint(&claims(sub, src), &key).unwrap()
    }

    fn claims(sub: &str, src: Option<Vec<String>>) -> GrantClaims {
        GrantClaims {
            iss: "jit-control".into(),
            sub: sub.into(),
            aud: "payments-api".into(),
            jti: "g-1".into(),
            iat: NOW - 10,
            nbf: NOW - 10,
            exp: NOW + 600,
            scope: vec![ScopeRule::new(&["GET"], &["/v1/invoices/*"])],
            src,
            req: Some("r-1".into()),
            cnf: None,
        }
    }

    fn request(path: &str, extra: &[(&str, &str)]) -> HeaderMap {
        let mut pairs: Vec<(String, String)> = vec![
            (":method".into(), "GET".into()),
            (":path".into(), path.into()),
            (":authority".into(), "api.local".into()),
        ];
        pairs.extend(extra.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
        HeaderMap::from_pairs(&pairs)
    }

    fn verdict(cfg: &FilterConfig, headers: &HeaderMap) -> Verdict {
        evaluate(cfg, headers, &HOST, NOW * 1000, &Live::default()).verdict
    }

    #[test]
    fn valid_grant_forwards_with_identity_headers_and_without_spoofs() {
        let c = cfg("");
        let t = token("alice", None);
        let h = request(
            "/v1/invoices/7",
            &[("x-jit-grant", &t), ("x-jit-subject", "mallory"), ("x-jit-other", "1")],
        );
        let e = evaluate(&c, &h, &HOST, NOW * 1000, &Live::default());
        assert_eq!(e.verdict, Verdict::Grant(Outcome::Allowed));
        let Plan::Forward { remove, add } = plan(&c, &h, &e) else {
            panic!("denied")
        };
        assert_eq!(remove, vec![&b"x-jit-grant"[..], b"x-jit-subject", b"x-jit-other"]);
        let add: Vec<(&str, &[u8])> = add.iter().map(|(n, v)| (*n, v.as_ref())).collect();
        assert_eq!(
            add,
            vec![
                ("x-jit-subject", &b"alice"[..]),
                ("x-jit-grant-id", b"g-1"),
                ("x-jit-request-id", b"r-1")
            ]
        );
    }

    #[test]
    fn only_the_configured_identity_headers_are_set_and_spoofs_are_still_removed() {
        let c = cfg(r#","identity_headers":["grant_id"]"#);
        let t = token("alice", None);
        let h = request("/v1/invoices/7", &[("x-jit-grant", &t), ("x-jit-subject", "mallory")]);
        let e = evaluate(&c, &h, &HOST, NOW * 1000, &Live::default());
        let Plan::Forward { remove, add } = plan(&c, &h, &e) else {
            panic!("denied")
        };
        assert_eq!(remove, vec![&b"x-jit-grant"[..], b"x-jit-subject"]);
        let add: Vec<(&str, &[u8])> = add.iter().map(|(n, v)| (*n, v.as_ref())).collect();
        assert_eq!(add, vec![("x-jit-grant-id", &b"g-1"[..])]);
    }

    #[test]
    fn two_grants_are_malformed_never_first_wins() {
        let c = cfg(r#","accept_bearer":true"#);
        let t = token("alice", None);
        let twice = request("/v1/invoices/7", &[("x-jit-grant", &t), ("x-jit-grant", &t)]);
        assert_eq!(verdict(&c, &twice), Verdict::Grant(Outcome::GrantMalformed));
        let bearer = format!("Bearer {t}");
        let both = request("/v1/invoices/7", &[("x-jit-grant", &t), ("authorization", &bearer)]);
        assert_eq!(verdict(&c, &both), Verdict::Grant(Outcome::GrantMalformed));
        let only_bearer = request("/v1/invoices/7", &[("authorization", &bearer)]);
        let e = evaluate(&c, &only_bearer, &HOST, NOW * 1000, &Live::default());
        assert_eq!(e.verdict, Verdict::Grant(Outcome::Allowed));
        let Plan::Forward { remove, .. } = plan(&c, &only_bearer, &e) else {
            panic!()
        };
        assert!(remove.contains(&&b"authorization"[..]));
    }

    #[test]
    fn authorization_is_ignored_unless_bearer_is_accepted() {
        let c = cfg("");
        let t = token("alice", None);
        let bearer = format!("Bearer {t}");
        assert_eq!(
            verdict(&c, &request("/v1/invoices/7", &[("authorization", &bearer)])),
            Verdict::Grant(Outcome::GrantMissing)
        );
    }

    #[test]
    fn proxy_set_original_path_is_never_trusted() {
        let c = cfg("");
        let t = token("alice", None);
        let h = request(
            "/v1/admin",
            &[("x-jit-grant", &t), ("x-envoy-original-path", "/v1/invoices/7")],
        );
        assert_eq!(verdict(&c, &h), Verdict::Grant(Outcome::RequestOutOfScope));
    }

    #[test]
    fn unmatched_requests_follow_the_policy() {
        let h = request("/other", &[]);
        assert_eq!(verdict(&cfg(""), &h), Verdict::NoResource);
        assert_eq!(verdict(&cfg(r#","unmatched":"allow""#), &h), Verdict::Unprotected);
        // Path rules apply to every request, protected or not.
        assert_eq!(
            verdict(&cfg(r#","unmatched":"allow""#), &request("/a/../v1", &[])),
            Verdict::Grant(Outcome::PathRejected)
        );
    }

    #[test]
    fn unparsable_authority_is_rejected_even_when_unmatched_is_allowed() {
        let allow = cfg(r#","unmatched":"allow""#);
        for authority in [
            "api.local..",
            "alice@api.local",
            "api.local:443:443",
            "api.local,hr.local",
        ] {
            let h = HeaderMap::from_pairs(&[(":method", "GET"), (":path", "/other"), (":authority", authority)]);
            assert_eq!(verdict(&allow, &h), Verdict::AuthorityRejected, "{authority}");
            let e = evaluate(&allow, &h, &HOST, NOW * 1000, &Live::default());
            let Plan::Deny { status, body, .. } = plan(&allow, &h, &e) else {
                panic!("forwarded {authority}")
            };
            assert_eq!(status, 400);
            assert!(body.contains(r#""error":"authority_rejected""#), "{body}");
        }
    }

    #[test]
    fn identity_header_must_equal_sub() {
        let c = cfg(r#","identity":{"source":"header","name":"x-user"}"#);
        let t = token("alice", None);
        assert_eq!(
            verdict(
                &c,
                &request("/v1/invoices/7", &[("x-jit-grant", &t), ("x-user", "alice")])
            ),
            Verdict::Grant(Outcome::Allowed)
        );
        assert_eq!(
            verdict(
                &c,
                &request("/v1/invoices/7", &[("x-jit-grant", &t), ("x-user", "bob")])
            ),
            Verdict::Grant(Outcome::IdentityMismatch)
        );
        assert_eq!(
            verdict(&c, &request("/v1/invoices/7", &[("x-jit-grant", &t)])),
            Verdict::Grant(Outcome::IdentityMismatch)
        );
        assert_eq!(
            verdict(
                &c,
                &request(
                    "/v1/invoices/7",
                    &[("x-jit-grant", &t), ("x-user", "alice"), ("x-user", "alice")]
                )
            ),
            Verdict::Grant(Outcome::IdentityMismatch)
        );
    }

    #[test]
    fn peer_certificate_identity_is_asked_of_the_host() {
        let c = cfg(r#","identity":{"source":"peer_uri_san"}"#);
        let t = token("spiffe://corp/alice", None);
        let h = request("/v1/invoices/7", &[("x-jit-grant", &t)]);
        let host = Host {
            san: Some(b"spiffe://corp/alice".to_vec()),
            ..HOST
        };
        assert_eq!(
            evaluate(&c, &h, &host, NOW * 1000, &Live::default()).verdict,
            Verdict::Grant(Outcome::Allowed)
        );
        assert_eq!(verdict(&c, &h), Verdict::Grant(Outcome::IdentityMismatch));
    }

    #[test]
    fn source_restriction_uses_the_connection_address() {
        let c = cfg("");
        let t = token("alice", Some(vec!["10.0.0.0/8".into()]));
        let h = request(
            "/v1/invoices/7",
            &[("x-jit-grant", &t), ("x-forwarded-for", "10.1.1.1")],
        );
        assert_eq!(verdict(&c, &h), Verdict::Grant(Outcome::SourceNotAllowed));
        let inside = Host {
            source: Some("10.2.3.4".parse().unwrap()),
            ..HOST
        };
        assert_eq!(
            evaluate(&c, &h, &inside, NOW * 1000, &Live::default()).verdict,
            Verdict::Grant(Outcome::Allowed)
        );
    }

    #[test]
    fn deny_plan_has_status_body_and_challenge() {
        let c = cfg("");
        let h = request("/v1/invoices/7", &[]);
        let e = evaluate(&c, &h, &HOST, NOW * 1000, &Live::default());
        let Plan::Deny { status, headers, body } = plan(&c, &h, &e) else {
            panic!()
        };
        assert_eq!(status, 401);
        assert!(headers.contains(&("www-authenticate", r#"Bearer realm="jitgate""#.to_owned())));
        assert!(headers.contains(&("cache-control", "no-store".to_owned())));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "grant_missing");
        assert_eq!(v["resource"], "payments-api");
        assert_eq!(v["request_access"], "http://jit.example/request");
        assert!(v["message"].as_str().unwrap().ends_with('.'));

        let h = request("/nowhere", &[]);
        let e = evaluate(&c, &h, &HOST, NOW * 1000, &Live::default());
        let Plan::Deny { status, body, .. } = plan(&c, &h, &e) else {
            panic!()
        };
        assert_eq!(status, 403);
        assert!(body.contains(r#""resource":null"#), "{body}");
    }

    #[test]
    fn dry_run_forwards_denied_requests_but_still_strips_spoofs() {
        let c = cfg(r#","mode":"dry-run""#);
        let h = request("/v1/invoices/7", &[("x-jit-subject", "mallory")]);
        let e = evaluate(&c, &h, &HOST, NOW * 1000, &Live::default());
        assert_eq!(e.verdict, Verdict::Grant(Outcome::GrantMissing));
        assert_eq!(
            plan(&c, &h, &e),
            Plan::Forward {
                remove: vec![&b"x-jit-subject"[..]],
                add: vec![]
            }
        );
    }

    #[test]
    fn certificate_digests_parse_only_as_64_hex_digits() {
        let hex = "4d3048eaf9a5b2a39ef027bdb5809a249ba250d4d384038e5c02430d5bbe646e";
        let digest = parse_certificate_digest(hex.as_bytes()).unwrap();
        assert_eq!(digest[0], 0x4d);
        assert_eq!(digest[31], 0x6e);
        assert_eq!(parse_certificate_digest(hex.to_uppercase().as_bytes()), Some(digest));
        for bad in [
            "",
            &hex[2..],
            &format!("{hex}00"),
            &hex.replace('4', "g"),
            &hex.replace("4d", "+d"),
        ] {
            assert_eq!(parse_certificate_digest(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_device_bound_grant_needs_the_certificate_it_names() {
        let c = cfg("");
        let key = SigningKey::from_base64url("k1", KEY).unwrap();
        let bound = [7u8; 32];
        let t = mint(
            &GrantClaims {
                cnf: Some(bound),
                ..claims("alice", None)
            },
            &key,
        )
        .unwrap();
        let h = request("/v1/invoices/7", &[("x-jit-grant", &t)]);
        let with = |cert| evaluate(&c, &h, &Host { cert, ..HOST }, NOW * 1000, &Live::default()).verdict;
        assert_eq!(with(Some(bound)), Verdict::Grant(Outcome::Allowed));
        assert_eq!(with(Some([8u8; 32])), Verdict::Grant(Outcome::DeviceMismatch));
        assert_eq!(with(None), Verdict::Grant(Outcome::DeviceMismatch));
    }

    #[test]
    fn hostile_header_values_do_not_panic() {
        let c = cfg(r#","accept_bearer":true"#);
        for v in [
            &b"\xff\xfe"[..],
            b"",
            b" ",
            b"Bearer",
            b"bearer \xff",
            &[b'a'; 100_000][..],
        ] {
            let h = HeaderMap::from_pairs(&[
                (&b":path"[..], &b"/v1/invoices/7"[..]),
                (b":method", b"GET"),
                (b"x-jit-grant", v),
                (b"authorization", v),
            ]);
            let e = evaluate(&c, &h, &HOST, NOW * 1000, &Live::default());
            assert!(!e.verdict.passes());
            let _ = plan(&c, &h, &e);
        }
        let no_pseudo = HeaderMap::from_pairs::<&[u8], &[u8]>(&[]);
        assert_eq!(verdict(&c, &no_pseudo), Verdict::Grant(Outcome::PathRejected));
    }
}
