//! Scope rules: which methods and paths a grant allows (spec: "Scope rules").
//!
//! Patterns are matched segment by segment against the undecoded request
//! path, which [`crate::path::check_request_path`] has already checked.
//! `*` matches exactly one segment; `**`, only as the last segment,
//! matches zero or more.

/// Most rules a grant may carry.
pub const MAX_RULES: usize = 32;

/// Longest method name accepted in a rule.
pub const MAX_METHOD_LEN: usize = 32;

/// Longest path pattern accepted in a rule.
pub const MAX_PATTERN_LEN: usize = 1024;

/// One scope rule: any of `methods` on any of `paths`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRule {
    /// Upper-case method names, or `"*"` for any method.
    pub methods: Vec<String>,
    /// Path patterns.
    pub paths: Vec<String>,
}

impl ScopeRule {
    /// A rule from string slices, for convenience in code and tests.
    pub fn new(methods: &[&str], paths: &[&str]) -> Self {
        ScopeRule {
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// Checks the rule's form: both lists non-empty, every entry valid.
    pub fn validate(&self) -> Result<(), ScopeError> {
        if self.methods.is_empty() {
            return Err(ScopeError::NoMethods);
        }
        if self.paths.is_empty() {
            return Err(ScopeError::NoPaths);
        }
        self.methods.iter().try_for_each(|m| validate_method(m))?;
        self.paths.iter().try_for_each(|p| validate_pattern(p))
    }

    /// Whether this rule allows `method` on `path` (path already checked).
    pub fn allows(&self, method: &[u8], path: &[u8]) -> bool {
        self.methods.iter().any(|m| method_matches(m.as_bytes(), method))
            && self.paths.iter().any(|p| pattern_matches(p.as_bytes(), path))
    }

    /// Whether everything `inner` allows, this rule allows too.
    pub fn covers(&self, inner: &ScopeRule) -> bool {
        inner
            .methods
            .iter()
            .all(|im| self.methods.iter().any(|om| om == "*" || (om == im && im != "*")))
            && inner
                .paths
                .iter()
                .all(|ip| self.paths.iter().any(|op| pattern_covers(op, ip)))
    }
}

/// Why a method or pattern is not acceptable in a scope rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A rule has no methods.
    #[error("a scope rule needs at least one method")]
    NoMethods,
    /// A rule has no paths.
    #[error("a scope rule needs at least one path pattern")]
    NoPaths,
    /// A method is not `*` or an upper-case HTTP method name.
    #[error("method {0:?} must be \"*\" or an upper-case HTTP method name")]
    BadMethod(String),
    /// A path pattern does not follow the pattern syntax.
    #[error("path pattern {0:?} must start with '/', have no empty segments, and use '*' or '**' only as whole segments ('**' last)")]
    BadPattern(String),
    /// Too many or too few rules.
    #[error("a scope needs 1 to 32 rules")]
    RuleCount,
}

impl ScopeError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ScopeError::NoMethods => "scope_no_methods",
            ScopeError::NoPaths => "scope_no_paths",
            ScopeError::BadMethod(_) => "scope_bad_method",
            ScopeError::BadPattern(_) => "scope_bad_pattern",
            ScopeError::RuleCount => "scope_rule_count",
        }
    }
}

/// Whether `method` may appear in a rule: `*`, or an upper-case token.
pub fn is_valid_method(method: &[u8]) -> bool {
    method == b"*"
        || (!method.is_empty()
            && method.len() <= MAX_METHOD_LEN
            && method.first().is_some_and(u8::is_ascii_uppercase)
            && method
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_')))
}

/// Checks a method for use in a scope rule.
pub fn validate_method(method: &str) -> Result<(), ScopeError> {
    if is_valid_method(method.as_bytes()) {
        Ok(())
    } else {
        Err(ScopeError::BadMethod(method.to_owned()))
    }
}

/// Whether `pattern` follows the pattern syntax.
pub fn is_valid_pattern(pattern: &[u8]) -> bool {
    if pattern == b"/" {
        return true;
    }
    let Some(rest) = pattern.strip_prefix(b"/") else {
        return false;
    };
    if pattern.len() > MAX_PATTERN_LEN || pattern.iter().any(|&b| b < 0x20 || b == 0x7F) {
        return false;
    }
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        let valid = match seg {
            b"" => false,
            b"*" => true,
            b"**" => last,
            s => !s.contains(&b'*'),
        };
        if !valid {
            return false;
        }
    }
    true
}

/// Checks a path pattern for use in a scope rule.
pub fn validate_pattern(pattern: &str) -> Result<(), ScopeError> {
    if is_valid_pattern(pattern.as_bytes()) {
        Ok(())
    } else {
        Err(ScopeError::BadPattern(pattern.to_owned()))
    }
}

/// Whether a rule's method entry allows the request method. `GET` does not
/// imply `HEAD`.
pub fn method_matches(rule_method: &[u8], method: &[u8]) -> bool {
    rule_method == b"*" || rule_method == method
}

fn segments(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    // "/" has no segments; otherwise every `/` starts one.
    let rest = if path == b"/" {
        &[][..]
    } else {
        path.get(1..).unwrap_or(&[])
    };
    let empty = rest.is_empty();
    rest.split(|&b| b == b'/').filter(move |_| !empty)
}

/// Whether a (valid) pattern matches a (checked) request path.
pub fn pattern_matches(pattern: &[u8], path: &[u8]) -> bool {
    let mut path_segments = segments(path);
    for p in segments(pattern) {
        if p == b"**" {
            return true;
        }
        match path_segments.next() {
            Some(s) if p == b"*" && !s.is_empty() => {}
            Some(s) if p == s => {}
            _ => return false,
        }
    }
    path_segments.next().is_none()
}

/// Whether every path that `inner` matches is also matched by `outer`. The
/// control service uses it to keep requested scopes within a resource's
/// requestable scope.
pub fn pattern_covers(outer: &str, inner: &str) -> bool {
    if !is_valid_pattern(outer.as_bytes()) || !is_valid_pattern(inner.as_bytes()) {
        return false;
    }
    let mut o = segments(outer.as_bytes());
    let mut i = segments(inner.as_bytes());
    loop {
        match (o.next(), i.next()) {
            (Some(b"**"), _) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(_), Some(b"**")) => return false,
            (Some(b"*"), Some(_)) => {}
            (Some(os), Some(is)) if os == is => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        assert!(is_valid_pattern(p.as_bytes()), "{p}");
        pattern_matches(p.as_bytes(), path.as_bytes())
    }

    #[test]
    fn star_is_one_segment_double_star_any() {
        assert!(m("/v1/invoices/*", "/v1/invoices/INV-9"));
        assert!(!m("/v1/invoices/*", "/v1/invoices"));
        assert!(!m("/v1/invoices/*", "/v1/invoices/a/b"));
        assert!(m("/v1/reports/**", "/v1/reports"));
        assert!(m("/v1/reports/**", "/v1/reports/2026/q3"));
        assert!(!m("/v1/reports/**", "/v1/reportsX"));
        assert!(m("/**", "/"));
        assert!(m("/**", "/a/b"));
        assert!(m("/", "/"));
        assert!(!m("/", "/a"));
        assert!(!m("/a", "/"));
        assert!(m("/*/x", "/a/x"));
    }

    #[test]
    fn invalid_patterns_are_refused() {
        for p in ["", "v1", "/v1/", "//", "/**/x", "/a*", "/a/**b", "/a\n"] {
            assert!(!is_valid_pattern(p.as_bytes()), "{p:?}");
        }
    }

    #[test]
    fn methods_are_exact_upper_case() {
        assert!(is_valid_method(b"GET"));
        assert!(is_valid_method(b"*"));
        assert!(is_valid_method(b"M-SEARCH"));
        assert!(!is_valid_method(b"get"));
        assert!(!is_valid_method(b""));
        assert!(!is_valid_method(b"G ET"));
        assert!(method_matches(b"GET", b"GET"));
        assert!(!method_matches(b"GET", b"HEAD"));
        assert!(method_matches(b"*", b"PATCH"));
    }

    #[test]
    fn covers_is_containment() {
        assert!(pattern_covers("/v1/invoices/**", "/v1/invoices/*"));
        assert!(pattern_covers("/v1/invoices/**", "/v1/invoices"));
        assert!(pattern_covers("/v1/invoices/*", "/v1/invoices/INV-9"));
        assert!(!pattern_covers("/v1/invoices/*", "/v1/invoices/**"));
        assert!(!pattern_covers("/v1/invoices/*", "/v1/invoices"));
        assert!(!pattern_covers("/v1/invoices/INV-9", "/v1/invoices/*"));
        assert!(pattern_covers("/**", "/"));
        assert!(!pattern_covers("/", "/**"));
        let outer = ScopeRule::new(&["GET", "HEAD"], &["/v1/**"]);
        assert!(outer.covers(&ScopeRule::new(&["GET"], &["/v1/x/*"])));
        assert!(!outer.covers(&ScopeRule::new(&["POST"], &["/v1/x"])));
        assert!(!outer.covers(&ScopeRule::new(&["*"], &["/v1/x"])));
        assert!(ScopeRule::new(&["*"], &["/**"]).covers(&ScopeRule::new(&["*"], &["/a"])));
    }
}
