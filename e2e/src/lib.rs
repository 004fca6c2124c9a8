//! Harness for end-to-end tests against real Envoy (work in progress).
