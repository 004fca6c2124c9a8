//! The jitgate proxy-wasm filter (work in progress).
