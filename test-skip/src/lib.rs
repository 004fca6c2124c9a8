//! Skipping a test that cannot run on this machine, so that the skip shows.
//!
//! A test that returns early passes in cargo's eyes, and what it prints on
//! stderr is hidden for passing tests. [`skip`] therefore records the test's
//! name and the reason as one line in the file named by `JITGATE_SKIP_LOG`
//! (which `scripts/test` sets, then reports and counts), and turns the skip
//! into a failure when the run must not skip: `JITGATE_NO_SKIPS=1` for
//! every skip (CI), `JITGATE_REQUIRE_POSTGRES=1` for a missing PostgreSQL.
//!
//! ```no_run
//! use jitgate_test_skip::{skip, Lacking};
//!
//! let mounted = false; // e.g. a tmpfs mount was refused
//! if !mounted {
//!     skip(Lacking::Privilege, "cannot mount a small tmpfs (needs root)");
//!     return;
//! }
//! ```

use std::io::Write;

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG_VAR: &str = "JITGATE_SKIP_LOG";
/// Set to `1`, every skip fails its test instead.
pub const NO_SKIPS_VAR: &str = "JITGATE_NO_SKIPS";
/// Set to `1`, a skip for a missing PostgreSQL fails its test instead.
pub const REQUIRE_POSTGRES_VAR: &str = "JITGATE_REQUIRE_POSTGRES";

/// What the machine lacks for the test to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lacking {
    /// A reachable PostgreSQL server, or its binaries.
    Postgres,
    /// A privilege, such as mounting a file system.
    Privilege,
    /// A program the test runs.
    Tool,
}

/// Which skips the run allows, read from the environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// `JITGATE_NO_SKIPS=1`: no skip at all.
    pub no_skips: bool,
    /// `JITGATE_REQUIRE_POSTGRES=1`: no skip for a missing PostgreSQL.
    pub require_postgres: bool,
}

impl Policy {
    /// The policy of this process's environment.
    pub fn from_env() -> Policy {
        let on = |var| std::env::var(var).as_deref() == Ok("1");
        Policy {
            no_skips: on(NO_SKIPS_VAR),
            require_postgres: on(REQUIRE_POSTGRES_VAR),
        }
    }

    /// `Err` with the variable that forbids it when this skip must fail.
    pub fn allows(self, lacking: Lacking) -> Result<(), &'static str> {
        if self.no_skips {
            Err(NO_SKIPS_VAR)
        } else if self.require_postgres && lacking == Lacking::Postgres {
            Err(REQUIRE_POSTGRES_VAR)
        } else {
            Ok(())
        }
    }
}

/// The running test's name: `<test binary>::<test function path>`.
///
/// libtest runs each test on a thread named after it (also with one test
/// thread, and under nextest); the binary's name loses cargo's hash suffix.
pub fn current_test() -> String {
    let binary = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let binary = match binary.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_owned(),
        _ => binary,
    };
    let thread = std::thread::current();
    format!("{binary}::{}", thread.name().unwrap_or("unnamed"))
}

/// Skips the running test because the machine lacks something: records it
/// (stderr and `JITGATE_SKIP_LOG`) and returns, so that the caller returns
/// early; panics instead when the run does not allow this skip.
pub fn skip(lacking: Lacking, reason: &str) {
    let test = current_test();
    if let Err(var) = Policy::from_env().allows(lacking) {
        panic!("{test} cannot run here and {var}=1 forbids skipping it: {reason}");
    }
    eprintln!("SKIPPED: {test}: {reason}");
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR) {
        let line = record_line(&test, reason);
        // One write of one short line to a file opened for appending: lines
        // from tests running in parallel do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("{test}: cannot record the skip in {}: {e}", path.to_string_lossy());
        }
    }
}

/// The line recorded for a skip: `<test>\t<reason>\n`, the reason on one line.
pub fn record_line(test: &str, reason: &str) -> String {
    let reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("{test}\t{reason}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_skip_is_allowed_by_default() {
        for lacking in [Lacking::Postgres, Lacking::Privilege, Lacking::Tool] {
            assert_eq!(Policy::default().allows(lacking), Ok(()));
        }
    }

    #[test]
    fn no_skips_forbids_every_skip() {
        let policy = Policy {
            no_skips: true,
            require_postgres: false,
        };
        for lacking in [Lacking::Postgres, Lacking::Privilege, Lacking::Tool] {
            assert_eq!(policy.allows(lacking), Err(NO_SKIPS_VAR));
        }
    }

    #[test]
    fn require_postgres_forbids_only_postgres_skips() {
        let policy = Policy {
            no_skips: false,
            require_postgres: true,
        };
        assert_eq!(policy.allows(Lacking::Postgres), Err(REQUIRE_POSTGRES_VAR));
        assert_eq!(policy.allows(Lacking::Privilege), Ok(()));
        assert_eq!(policy.allows(Lacking::Tool), Ok(()));
    }

    #[test]
    fn the_test_name_is_the_binary_and_the_test_function() {
        let name = current_test();
        assert!(
            name.ends_with("::tests::the_test_name_is_the_binary_and_the_test_function"),
            "{name}"
        );
        assert!(name.starts_with("jitgate_test_skip::"), "{name}");
    }

    #[test]
    fn a_record_is_one_line_with_a_tab_between_name_and_reason() {
        assert_eq!(record_line("faults::t", "no\nroot\there"), "faults::t\tno root here\n");
    }
}
