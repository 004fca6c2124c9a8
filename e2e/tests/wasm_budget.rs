//! The release filter module stays within its size budget: every proxy
//! worker holds a copy, and the budget keeps the dependency set honest.

/// 300 KB.
const BUDGET_BYTES: u64 = 300_000;

#[test]
fn release_wasm_is_within_its_300_kb_budget() {
    let path = jitgate_e2e::filter_wasm();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(u64::MAX);
    println!("{}: {size} bytes (budget {BUDGET_BYTES})", path.display());
    assert!(
        size <= BUDGET_BYTES,
        "the filter is {size} bytes, over its {BUDGET_BYTES}-byte budget"
    );
}
