//! Tests of the grant crate compiled to WebAssembly (see tests/).
