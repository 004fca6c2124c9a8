//! What the proxy learns from the control service off the request path:
//! the revocation list and, in identity-aware mode, the active grant set.
//!
//! One worker at a time polls (it claims the poll in shared data); the
//! result is written to shared data, and every worker copies it into its
//! own [`Live`] state on its next tick, so the request path reads plain
//! local memory. Everything here is pure Rust: parsing responses, merging,
//! pruning, and the byte encoding used in shared data.

use grant::json::{self, Chars, Cursor, Token};
use grant::{Revocations, VerifiedGrant, Verifier};

/// Most revocations kept. A longer list fails the sync (and the staleness
/// metric climbs) rather than silently forgetting a revocation.
pub const MAX_REVOCATIONS: usize = 100_000;

/// Most grants kept in the identity-aware grant set.
pub const MAX_GRANTS: usize = 20_000;

/// Why a control response could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncError(pub &'static str);

/// The revocation list: revoked grant ids with their expiry, sorted by id.
///
/// A sorted vector rather than a hash map: lookups are a binary search over
/// a list that is small in practice, and the module stays free of hashing
/// code (size matters in every proxy's memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    by_jti: Vec<(String, u64)>,
}

impl Revocations for RevocationSet {
    fn is_revoked(&self, jti: &str) -> bool {
        self.by_jti.binary_search_by(|(j, _)| j.as_str().cmp(jti)).is_ok()
    }
}

impl RevocationSet {
    /// Adds revocations; a repeated id keeps the latest expiry (a grant's
    /// expiry never changes, and the later one is the safe one). The new
    /// entries are sorted once and merged with the sorted list in one pass,
    /// so a first sync of a long list costs O(n log n), not a sorted insert
    /// (a shift of the whole list) per entry. On error the set is left as
    /// it was: a failed sync never forgets a revocation.
    pub fn merge(&mut self, entries: impl IntoIterator<Item = (String, u64)>) -> Result<(), SyncError> {
        const TOO_MANY: SyncError = SyncError("revocation list is larger than the filter keeps");
        let mut incoming: Vec<(String, u64)> = Vec::new();
        for entry in entries {
            // Bounded while reading: a hostile response cannot make the
            // worker buffer more than the cap.
            if incoming.len() >= MAX_REVOCATIONS {
                return Err(TOO_MANY);
            }
            incoming.push(entry);
        }
        if incoming.is_empty() {
            return Ok(());
        }
        heapsort(&mut incoming, |a, b| a.0.cmp(&b.0));
        let mut merged: Vec<(String, u64)> = Vec::with_capacity(self.by_jti.len() + incoming.len());
        let mut old = self.by_jti.iter().peekable();
        for (jti, exp) in incoming {
            while let Some(kept) = old.next_if(|(k, _)| *k < jti) {
                merged.push(kept.clone());
            }
            let exp = old.next_if(|(k, _)| *k == jti).map_or(exp, |(_, kept)| exp.max(*kept));
            match merged.last_mut() {
                Some(last) if last.0 == jti => last.1 = last.1.max(exp),
                _ => merged.push((jti, exp)),
            }
        }
        merged.extend(old.cloned());
        if merged.len() > MAX_REVOCATIONS {
            return Err(TOO_MANY);
        }
        self.by_jti = merged;
        Ok(())
    }

    /// Drops entries whose grant has expired (with leeway): an expired grant
    /// is refused anyway, so the list only holds what still matters.
    pub fn prune(&mut self, now: u64, leeway: u64) {
        self.by_jti.retain(|(_, exp)| exp.saturating_add(leeway) > now);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.by_jti.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.by_jti.is_empty()
    }
}

/// Sorts in place by `cmp`, in O(n log n) and without allocating.
///
/// A heapsort of a few lines instead of the standard sorts: every proxy
/// worker holds the module, whose size is budgeted (300 KB), and the
/// standard unstable sort adds about 6 KB to it. Nothing here needs a
/// stable order (ties among revocations are settled by the merge; grants
/// are ordered by a total key).
fn heapsort<T>(v: &mut [T], cmp: impl Fn(&T, &T) -> core::cmp::Ordering) {
    let less = |v: &[T], i: usize, j: usize| match (v.get(i), v.get(j)) {
        (Some(a), Some(b)) => cmp(a, b).is_lt(),
        _ => false,
    };
    let sift_down = |v: &mut [T], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(v, child, child + 1) {
            child += 1;
        }
        if !less(v, root, child) {
            return;
        }
        v.swap(root, child);
        root = child;
    };
    let n = v.len();
    for root in (0..n / 2).rev() {
        sift_down(v, root, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// The state of the last successful sync, as kept in shared data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Opaque cursor for the next poll.
    pub cursor: String,
    /// When the list was last confirmed by the control service (ms since
    /// the epoch); `None` before the first success.
    pub synced_at_ms: Option<u64>,
    /// The revocations.
    pub revoked: RevocationSet,
    /// Active grant tokens (identity-aware mode).
    pub grants: Vec<String>,
    /// Cursor of the grant set.
    pub grants_cursor: String,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let b = self.s.get(self.pos..self.pos.checked_add(4)?)?;
        self.pos += 4;
        Some(u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]))
    }
    fn u64(&mut self) -> Option<u64> {
        let lo = u64::from(self.u32()?);
        let hi = u64::from(self.u32()?);
        Some(hi << 32 | lo)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        let b = self.s.get(self.pos..self.pos.checked_add(len)?)?;
        self.pos += len;
        Some(b)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

const SNAPSHOT_VERSION: u32 = 1;

impl Snapshot {
    /// Encodes for shared data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.revoked.len() * 48);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        put_bytes(&mut out, self.cursor.as_bytes());
        let synced = self.synced_at_ms.map_or(u64::MAX, |t| t);
        out.extend_from_slice(&(synced as u32).to_le_bytes());
        out.extend_from_slice(&((synced >> 32) as u32).to_le_bytes());
        out.extend_from_slice(&(self.revoked.by_jti.len() as u32).to_le_bytes());
        for (jti, exp) in &self.revoked.by_jti {
            put_bytes(&mut out, jti.as_bytes());
            out.extend_from_slice(&(*exp as u32).to_le_bytes());
            out.extend_from_slice(&((*exp >> 32) as u32).to_le_bytes());
        }
        put_bytes(&mut out, self.grants_cursor.as_bytes());
        out.extend_from_slice(&(self.grants.len() as u32).to_le_bytes());
        for token in &self.grants {
            put_bytes(&mut out, token.as_bytes());
        }
        out
    }

    /// Decodes from shared data; `None` if the bytes are not a snapshot of
    /// this version (another filter build wrote them).
    pub fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let mut r = Reader { s: bytes, pos: 0 };
        if r.u32()? != SNAPSHOT_VERSION {
            return None;
        }
        let cursor = r.string()?;
        let synced = r.u64()?;
        let count = r.u32()? as usize;
        let mut by_jti: Vec<(String, u64)> = Vec::with_capacity(count.min(MAX_REVOCATIONS));
        for _ in 0..count {
            let jti = r.string()?;
            let exp = r.u64()?;
            // Written sorted; refuse anything else rather than mis-search.
            if by_jti.last().is_some_and(|(last, _)| *last >= jti) {
                return None;
            }
            by_jti.push((jti, exp));
        }
        let grants_cursor = r.string()?;
        let count = r.u32()? as usize;
        let mut grants = Vec::with_capacity(count.min(MAX_GRANTS));
        for _ in 0..count {
            grants.push(r.string()?);
        }
        Some(Snapshot {
            cursor,
            synced_at_ms: (synced != u64::MAX).then_some(synced),
            revoked: RevocationSet { by_jti },
            grants,
            grants_cursor,
        })
    }
}

fn decode_str(raw: &[u8]) -> String {
    Chars::new(raw).collect()
}

fn object<'a>(body: &'a [u8]) -> Result<Cursor<'a>, SyncError> {
    let body = json::validate_object(body).map_err(|_| SyncError("response is not a JSON object"))?;
    let mut c = Cursor::new(body);
    match c.token() {
        Some(Token::Object) => Ok(c),
        _ => Err(SyncError("response is not a JSON object")),
    }
}

/// A sync cursor: opaque, sent back as it came (a string, or a number).
fn read_cursor(t: Token<'_>) -> Result<String, SyncError> {
    match t {
        Token::Str(raw) => Ok(decode_str(raw)),
        Token::Num(raw) => Ok(String::from_utf8_lossy(raw).into_owned()),
        _ => Err(SyncError("cursor is not a string")),
    }
}

/// Parses `GET /v1/revocations` → `{"cursor": "...", "revoked": [{"jti": "...", "exp": n}]}`.
pub fn parse_revocations(body: &[u8]) -> Result<(String, Vec<(String, u64)>), SyncError> {
    let mut c = object(body)?;
    let (mut cursor, mut revoked) = (None, Vec::new());
    while let Some(key) = c.next_key() {
        let t = c.token().ok_or(SyncError("truncated"))?;
        if json::raw_eq_str(key, "cursor") {
            cursor = Some(read_cursor(t)?);
        } else if json::raw_eq_str(key, "revoked") {
            if t != Token::Array {
                return Err(SyncError("revoked is not an array"));
            }
            while c.next_element() {
                if c.token() != Some(Token::Object) {
                    return Err(SyncError("revoked entry is not an object"));
                }
                let (mut jti, mut exp) = (None, None);
                while let Some(k) = c.next_key() {
                    let v = c.token().ok_or(SyncError("truncated"))?;
                    match v {
                        Token::Str(raw) if json::raw_eq_str(k, "jti") => jti = Some(decode_str(raw)),
                        Token::Num(raw) if json::raw_eq_str(k, "exp") => exp = json::parse_time_integer(raw),
                        _ => c.skip_rest(v).ok_or(SyncError("truncated"))?,
                    }
                }
                match (jti, exp) {
                    (Some(j), Some(e)) if !j.is_empty() => revoked.push((j, e)),
                    _ => return Err(SyncError("revoked entry needs jti and exp")),
                }
            }
            continue;
        }
        c.skip_rest(t).ok_or(SyncError("truncated"))?;
    }
    Ok((cursor.ok_or(SyncError("cursor is missing"))?, revoked))
}

/// Parses `GET /v1/proxy/grants` → `{"cursor": "...", "grants": ["<token>", ...]}`:
/// the full set of active grants.
pub fn parse_grants(body: &[u8]) -> Result<(String, Vec<String>), SyncError> {
    let mut c = object(body)?;
    let (mut cursor, mut grants) = (None, None);
    while let Some(key) = c.next_key() {
        let t = c.token().ok_or(SyncError("truncated"))?;
        if json::raw_eq_str(key, "cursor") {
            cursor = Some(read_cursor(t)?);
        } else if json::raw_eq_str(key, "grants") {
            if t != Token::Array {
                return Err(SyncError("grants is not an array"));
            }
            let mut list = Vec::new();
            while c.next_element() {
                match c.token() {
                    Some(Token::Str(raw)) => list.push(decode_str(raw)),
                    _ => return Err(SyncError("grants entry is not a string")),
                }
            }
            if list.len() > MAX_GRANTS {
                return Err(SyncError("grant set is larger than the filter keeps"));
            }
            grants = Some(list);
            continue;
        }
        c.skip_rest(t).ok_or(SyncError("truncated"))?;
    }
    Ok((
        cursor.ok_or(SyncError("cursor is missing"))?,
        grants.ok_or(SyncError("grants is missing"))?,
    ))
}

/// Active grants, each verified (MAC, issuer) when it arrived. A token that
/// fails verification is left out: a compromised control link cannot forge
/// access, only withhold it.
#[derive(Debug, Default)]
pub struct GrantIndex {
    /// Sorted by subject, then resource, then newest first.
    grants: Vec<VerifiedGrant>,
}

impl GrantIndex {
    /// Builds the index from tokens: each must pass form, MAC and issuer
    /// (the count of those that do not is returned). The time window is
    /// checked on every use, so a grant that is not valid yet (a scheduled
    /// window) is kept and becomes usable on time; one already expired is
    /// left out.
    pub fn build(verifier: &Verifier, tokens: &[String], now: u64) -> (GrantIndex, usize) {
        let mut grants = Vec::with_capacity(tokens.len());
        let mut rejected = 0;
        for token in tokens {
            match verifier.verify_untimed(token.as_bytes()) {
                Ok(g) if verifier.check_time(&g, now) == Err(grant::Outcome::GrantExpired) => {}
                Ok(g) => grants.push(g),
                Err(_) => rejected += 1,
            }
        }
        heapsort(&mut grants, |a, b| {
            (a.sub(), a.aud(), core::cmp::Reverse(a.iat())).cmp(&(b.sub(), b.aud(), core::cmp::Reverse(b.iat())))
        });
        (GrantIndex { grants }, rejected)
    }

    /// The grants issued to `subject` for `resource`, newest first.
    pub fn lookup(&self, subject: &[u8], resource: &str) -> &[VerifiedGrant] {
        let start = self
            .grants
            .partition_point(|g| (g.sub().as_bytes(), g.aud()) < (subject, resource));
        let end = self
            .grants
            .partition_point(|g| (g.sub().as_bytes(), g.aud()) <= (subject, resource));
        self.grants.get(start..end).unwrap_or(&[])
    }

    /// Number of grants held.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Whether no grant is held.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }
}

/// Escapes a cursor for a query string (cursors are opaque); both
/// adapters poll with it.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Who is polling, sent with every sync call (both adapters): the proxy's
/// name, the grant-spec version it implements and the resources it
/// protects, so that the control service can tell, per resource, whether
/// every proxy seen lately checks what it is about to mint (a bound grant
/// needs spec 1.1 everywhere: earlier verifiers ignore `cnf`).
pub fn poller_headers(
    cfg: &crate::config::FilterConfig,
    link: &crate::config::ControlLink,
) -> [(&'static str, String); 3] {
    let resources: Vec<&str> = cfg.resources.iter().map(|r| r.id.as_str()).collect();
    [
        ("x-jitgate-proxy", link.proxy_id.clone()),
        ("x-jitgate-grant-spec", grant::SPEC_VERSION.to_owned()),
        // Resource ids are [A-Za-z0-9._-]: a comma list needs no escaping.
        ("x-jitgate-resources", resources.join(",")),
    ]
}

/// How often a stale revocation list is warned about, at most.
pub const STALE_WARNING_EVERY_MS: u64 = 10_000;

/// The warning both adapters log when the revocation list is older than
/// three poll intervals (`staleness_ms`: `u64::MAX` if never synced);
/// `None` while it is fresh.
pub fn staleness_warning(link: &crate::config::ControlLink, staleness_ms: u64) -> Option<String> {
    if staleness_ms <= link.poll_interval_ms.saturating_mul(3) {
        return None;
    }
    let age = if staleness_ms == u64::MAX {
        "never synced".to_owned()
    } else {
        format!("{staleness_ms} ms old")
    };
    let strict = if link.max_staleness_seconds.is_some() {
        " until max_staleness_seconds"
    } else {
        ""
    };
    Some(format!(
        "jitgate: revocation list is {age} (control cluster {}); valid grants keep working{strict}",
        link.cluster
    ))
}

/// What a worker knows right now; read by every request of that worker.
#[derive(Debug, Default)]
pub struct Live {
    /// Revoked grants.
    pub revoked: RevocationSet,
    /// Active grants (identity-aware mode).
    pub grants: GrantIndex,
    /// When the revocation list was last confirmed (ms since the epoch).
    pub synced_at_ms: Option<u64>,
    /// Recently verified grants.
    pub cache: crate::cache::GrantCache,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synced_grant_that_is_not_valid_yet_is_kept_and_becomes_usable_on_time() {
        let key = grant::SigningKey::new("k1", &[4; 32]).unwrap();
        let token = |jti: &str, nbf: u64, exp: u64| {
            grant::mint(
                &grant::GrantClaims {
                    iss: "i".into(),
                    sub: "alice".into(),
                    aud: "api".into(),
                    jti: jti.into(),
                    iat: 1_000,
                    nbf,
                    exp,
                    scope: vec![grant::ScopeRule::new(&["GET"], &["/**"])],
                    src: None,
                    req: None,
                    cnf: None,
                },
                &key,
            )
            .unwrap()
        };
        let mut keys = grant::KeySet::new();
        keys.add(key.clone()).unwrap();
        let verifier = Verifier::new("i", keys).with_leeway(0);
        let tokens = vec![
            token("scheduled", 2_000, 3_000),
            token("expired", 1_000, 1_400),
            "not-a-grant".to_owned(),
        ];
        let (index, rejected) = GrantIndex::build(&verifier, &tokens, 1_500);
        assert_eq!(rejected, 1, "only the unverifiable token is a failure");
        let held = index.lookup(b"alice", "api");
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].jti(), "scheduled");
        assert_eq!(
            verifier.check_time(&held[0], 1_500),
            Err(grant::Outcome::GrantNotYetValid)
        );
        assert_eq!(verifier.check_time(&held[0], 2_000), Ok(()));
    }

    #[test]
    fn heapsort_orders_like_the_standard_sort() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0, 1, 2, 3, 7, 64, 1000] {
            let mut v: Vec<(String, u64)> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (format!("g-{}", seed % 50), i)
                })
                .collect();
            let mut want: Vec<String> = v.iter().map(|e| e.0.clone()).collect();
            want.sort();
            heapsort(&mut v, |a, b| a.0.cmp(&b.0));
            assert_eq!(v.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), want, "{len}");
        }
    }

    #[test]
    fn merging_keeps_the_list_sorted_unique_and_the_latest_expiry() {
        let mut set = RevocationSet::default();
        set.merge([("b".to_owned(), 1), ("d".to_owned(), 1)]).unwrap();
        set.merge([
            ("c".to_owned(), 2),
            ("a".to_owned(), 2),
            ("d".to_owned(), 5),
            ("c".to_owned(), 3),
            ("b".to_owned(), 0),
        ])
        .unwrap();
        assert_eq!(
            set.by_jti,
            vec![("a".into(), 2), ("b".into(), 1), ("c".into(), 3), ("d".into(), 5)]
        );
        for jti in ["a", "b", "c", "d"] {
            assert!(set.is_revoked(jti));
        }
        assert!(!set.is_revoked("e"));
    }

    #[test]
    fn a_first_sync_of_the_largest_list_is_one_sort_and_a_failed_one_forgets_nothing() {
        // 100,000 entries in reverse order: the worst case of a sorted
        // insert per entry (every insert shifts the whole list, about 5e9
        // moves). Its time is measured by the `first_sync_100k` benchmark
        // (`cargo bench -p jitgate-filter`), not asserted here.
        let entries: Vec<(String, u64)> = (0..MAX_REVOCATIONS).rev().map(|i| (format!("g-{i:06}"), 9)).collect();
        let mut set = RevocationSet::default();
        set.merge(entries.clone()).unwrap();
        assert_eq!(set.len(), MAX_REVOCATIONS);
        assert!(set.by_jti.windows(2).all(|w| w[0].0 < w[1].0));
        // Merging the same list again changes nothing.
        set.merge(entries).unwrap();
        assert_eq!(set.len(), MAX_REVOCATIONS);
        // One more id overflows: refused, and the list is intact.
        assert!(set.merge([("zz".to_owned(), 9)]).is_err());
        assert_eq!(set.len(), MAX_REVOCATIONS);
        assert!(set.is_revoked("g-000000") && !set.is_revoked("zz"));
        let too_many = (0..=MAX_REVOCATIONS).map(|i| (format!("h-{i}"), 9));
        assert!(RevocationSet::default().merge(too_many).is_err());
    }

    #[test]
    fn revocations_parse_merge_and_prune() {
        let (cursor, list) = parse_revocations(
            br#"{"cursor":"17","revoked":[{"jti":"g-1","exp":100},{"jti":"g-\u0032","exp":200,"extra":[1]}]}"#,
        )
        .unwrap();
        assert_eq!(cursor, "17");
        let mut set = RevocationSet::default();
        set.merge(list).unwrap();
        assert!(set.is_revoked("g-1") && set.is_revoked("g-2"));
        set.prune(100, 30);
        assert!(set.is_revoked("g-1"), "kept until exp + leeway");
        set.prune(130, 30);
        assert!(!set.is_revoked("g-1") && set.is_revoked("g-2"));
    }

    #[test]
    fn bad_responses_are_refused_not_half_applied() {
        for body in [
            &b"[]"[..],
            b"{}",
            br#"{"cursor":"1","revoked":{}}"#,
            br#"{"cursor":"1","revoked":[{"jti":"a"}]}"#,
            br#"{"cursor":"1","revoked":[{"jti":"a","exp":-1}]}"#,
            br#"{"cursor":"1","revoked":[{"jti":"a","exp":1}],"cursor":"2"}"#,
            b"\xff",
        ] {
            assert!(parse_revocations(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn snapshots_round_trip_through_shared_data_bytes() {
        let mut s = Snapshot {
            cursor: "c9".into(),
            synced_at_ms: Some(1_780_000_000_123),
            ..Default::default()
        };
        s.revoked
            .merge([("g-1".to_owned(), 1_780_000_600), ("g-ü".to_owned(), 5)])
            .unwrap();
        s.grants = vec!["a.b.c".into()];
        s.grants_cursor = "g7".into();
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes), Some(s));
        for cut in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..cut]).is_none());
        }
        assert_eq!(
            Snapshot::decode(&Snapshot::default().encode()).unwrap().synced_at_ms,
            None
        );
    }

    #[test]
    fn grant_sets_parse() {
        let (cursor, grants) = parse_grants(br#"{"cursor":"5","grants":["a.b.c","d.e.f"]}"#).unwrap();
        assert_eq!((cursor.as_str(), grants.len()), ("5", 2));
        assert!(parse_grants(br#"{"cursor":"5","grants":[1]}"#).is_err());
    }
}
