//! RFC 9162 Merkle tree hashing and proofs, with no storage and no I/O.
//!
//! The audit log's records are the leaves of one Merkle tree (RFC 9162
//! section 2.1: leaf = SHA-256(0x00 || bytes), node = SHA-256(0x01 || left
//! || right)), so that a signed tree head (a checkpoint) commits to every
//! record before it, and inclusion and consistency proofs let an outsider
//! check one record, or that the log only grew, with O(log n) hashes.
//!
//! The tree is kept as its complete subtrees: node `(level, index)` covers
//! leaves `[index * 2^level, (index + 1) * 2^level)` and exists once all of
//! them do. The root at any size, and every proof, is computed from at most
//! O(log n) such nodes, read through [`Nodes`]; [`needed`] lists which ones
//! a computation reads, so that a store can fetch them in one query.
//!
//! The algorithms are written from the RFC rather than taken from a crate:
//! `ct-merkle` (the maintained one) keeps every leaf in memory, which does
//! not fit a tree of millions of stored records; these functions are short
//! and pinned below to Certificate Transparency's known answers.

use std::cell::RefCell;
use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// A complete subtree: `(level, index)`.
pub type NodeId = (u32, u64);

/// RFC 9162 leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 9162 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The complete subtrees whose concatenation is a tree of `size` leaves,
/// left to right (largest first): the "frontier" a new leaf is added to.
pub fn frontier(size: u64) -> Vec<NodeId> {
    (0..64u32)
        .rev()
        .filter(|level| size >> level & 1 == 1)
        .map(|level| (level, (size >> level) - 1))
        .collect()
}

/// Adds leaves to a tree given its frontier, and reports every complete
/// subtree that the additions finish (the rows a store writes).
#[derive(Debug, Clone)]
pub struct Appender {
    stack: Vec<(NodeId, Hash)>,
    size: u64,
}

impl Appender {
    /// The empty tree.
    pub fn empty() -> Appender {
        Appender { stack: vec![], size: 0 }
    }

    /// Starts from a tree of `size` leaves whose [`frontier`] hashes are
    /// given in that order.
    pub fn new(size: u64, frontier_hashes: Vec<Hash>) -> Result<Appender, MissingNode> {
        let ids = frontier(size);
        if ids.len() != frontier_hashes.len() {
            return Err(MissingNode(ids.get(frontier_hashes.len()).copied().unwrap_or((0, 0))));
        }
        Ok(Appender {
            stack: ids.into_iter().zip(frontier_hashes).collect(),
            size,
        })
    }

    /// Adds the next leaf (by its leaf hash); pushes onto `completed` the
    /// leaf node and every subtree it completes.
    pub fn push(&mut self, leaf: Hash, completed: &mut Vec<(NodeId, Hash)>) {
        let mut current = ((0u32, self.size), leaf);
        completed.push(current);
        while let Some(&((level, index), left)) = self.stack.last() {
            if level != current.0 .0 {
                break;
            }
            self.stack.pop();
            current = ((level + 1, index / 2), node_hash(&left, &current.1));
            completed.push(current);
        }
        self.stack.push(current);
        self.size += 1;
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some((_, last)) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |right, (_, left)| node_hash(left, &right))
    }
}

/// A stored complete subtree that a computation needed was not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Merkle tree node (level {}, index {}) is missing", .0 .0, .0 .1)]
pub struct MissingNode(pub NodeId);

/// Where complete subtree hashes are read from.
pub trait Nodes {
    /// The hash of complete subtree `id`, if stored.
    fn node(&self, id: NodeId) -> Option<Hash>;
}

impl Nodes for std::collections::HashMap<NodeId, Hash> {
    fn node(&self, id: NodeId) -> Option<Hash> {
        self.get(&id).copied()
    }
}

fn get(nodes: &dyn Nodes, id: NodeId) -> Result<Hash, MissingNode> {
    nodes.node(id).ok_or(MissingNode(id))
}

/// The largest power of two strictly below `n` (n > 1).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]) for `start` aligned as the RFC's recursion aligns it:
/// a complete subtree is read, anything else is split.
fn subtree(nodes: &dyn Nodes, start: u64, end: u64) -> Result<Hash, MissingNode> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start % n == 0 {
        return get(nodes, (n.trailing_zeros(), start / n));
    }
    let k = split(n);
    Ok(node_hash(
        &subtree(nodes, start, start + k)?,
        &subtree(nodes, start + k, end)?,
    ))
}

/// The root of the first `size` leaves.
pub fn root(nodes: &dyn Nodes, size: u64) -> Result<Hash, MissingNode> {
    subtree(nodes, 0, size)
}

/// RFC 9162 PATH(m, D\[n\]): the inclusion proof of leaf `index` (from 0) in
/// the tree of `size` leaves.
pub fn inclusion_proof(nodes: &dyn Nodes, index: u64, size: u64) -> Result<Vec<Hash>, MissingNode> {
    fn path(nodes: &dyn Nodes, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), MissingNode> {
        let n = end - start;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            path(nodes, m, start, start + k, out)?;
            out.push(subtree(nodes, start + k, end)?);
        } else {
            path(nodes, m - k, start + k, end, out)?;
            out.push(subtree(nodes, start, start + k)?);
        }
        Ok(())
    }
    let mut out = Vec::new();
    if index < size {
        path(nodes, index, 0, size, &mut out)?;
    }
    Ok(out)
}

/// RFC 9162 PROOF(m, D\[n\]): the consistency proof between the trees of
/// `old` and `new` leaves (empty when `old` is 0 or equal to `new`).
pub fn consistency_proof(nodes: &dyn Nodes, old: u64, new: u64) -> Result<Vec<Hash>, MissingNode> {
    fn subproof(
        nodes: &dyn Nodes,
        m: u64,
        start: u64,
        end: u64,
        whole: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), MissingNode> {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(subtree(nodes, start, end)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            subproof(nodes, m, start, start + k, whole, out)?;
            out.push(subtree(nodes, start + k, end)?);
        } else {
            subproof(nodes, m - k, start + k, end, false, out)?;
            out.push(subtree(nodes, start, start + k)?);
        }
        Ok(())
    }
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(nodes, old, 0, new, true, &mut out)?;
    }
    Ok(out)
}

/// Which stored nodes `compute` reads: it is run once against a source
/// that answers every question with a placeholder and records the
/// questions, so a store can fetch exactly those nodes in one query.
pub fn needed<T>(compute: impl FnOnce(&dyn Nodes) -> Result<T, MissingNode>) -> BTreeSet<NodeId> {
    struct Recorder(RefCell<BTreeSet<NodeId>>);
    impl Nodes for Recorder {
        fn node(&self, id: NodeId) -> Option<Hash> {
            self.0.borrow_mut().insert(id);
            Some([0; 32])
        }
    }
    let recorder = Recorder(RefCell::new(BTreeSet::new()));
    let _ = compute(&recorder);
    recorder.0.into_inner()
}

/// RFC 9162 section 2.1.3.2: whether `proof` shows that the leaf with hash
/// `leaf` is at `index` in the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// RFC 9162 section 2.1.4.2: whether `proof` shows that the tree of `new`
/// leaves with root `new_root` extends the tree of `old` leaves with root
/// `old_root`.
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        // The empty tree is a prefix of every tree.
        return proof.is_empty() && *old_root == empty_root();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Certificate Transparency's test leaves (merkle_tree_test.cc).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// The roots of the first 1..=8 of them, from the same file.
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// Appends `leaves` from empty, keeping every completed node.
    fn build(leaves: &[Hash]) -> (HashMap<NodeId, Hash>, Vec<Hash>) {
        let mut store = HashMap::new();
        let mut roots = Vec::new();
        let mut appender = Appender::new(0, Vec::new()).unwrap();
        for leaf in leaves {
            let mut done = Vec::new();
            appender.push(*leaf, &mut done);
            store.extend(done);
            roots.push(appender.root());
        }
        (store, roots)
    }

    fn ct_leaves() -> Vec<Hash> {
        LEAVES.iter().map(|l| leaf_hash(&hex::decode(l).unwrap())).collect()
    }

    #[test]
    fn roots_of_the_certificate_transparency_test_tree_are_the_known_answers() {
        let (store, roots) = build(&ct_leaves());
        for (size, expected) in ROOTS.iter().enumerate() {
            assert_eq!(
                hex::encode(roots[size]),
                *expected,
                "appender root at size {}",
                size + 1
            );
            assert_eq!(hex::encode(root(&store, size as u64 + 1).unwrap()), *expected);
        }
        assert_eq!(
            hex::encode(root(&store, 0).unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn an_appender_resumed_from_stored_frontier_continues_the_same_tree() {
        let leaves = ct_leaves();
        let (store, roots) = build(&leaves);
        for size in 0..leaves.len() as u64 {
            let hashes = frontier(size).into_iter().map(|id| store[&id]).collect();
            let mut appender = Appender::new(size, hashes).unwrap();
            let mut done = Vec::new();
            for leaf in &leaves[size as usize..] {
                appender.push(*leaf, &mut done);
            }
            assert_eq!(appender.root(), roots[7]);
            assert!(done.iter().all(|(id, hash)| store[id] == *hash));
        }
        assert_eq!(Appender::new(3, vec![[0; 32]]).unwrap_err(), MissingNode((0, 2)));
    }

    /// RFC 9162 / CT's inclusion proof of leaf 0 in the tree of 8, and of
    /// leaf 5 in the tree of 8 (merkle_tree_test.cc's kPathVectors).
    #[test]
    fn inclusion_proofs_match_the_known_answers_and_verify() {
        let (store, roots) = build(&ct_leaves());
        let proof = inclusion_proof(&store, 0, 8).unwrap();
        assert_eq!(
            proof.iter().map(hex::encode).collect::<Vec<_>>(),
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
        let leaves = ct_leaves();
        for size in 1..=8u64 {
            for index in 0..size {
                let proof = inclusion_proof(&store, index, size).unwrap();
                let root = roots[size as usize - 1];
                let leaf = leaves[index as usize];
                assert!(verify_inclusion(index, size, &leaf, &proof, &root), "{index} in {size}");
                assert!(!verify_inclusion(
                    index,
                    size,
                    &leaves[(index as usize + 1) % 8],
                    &proof,
                    &root
                ));
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(index, size, &leaf, &bad, &root));
                }
                assert!(!verify_inclusion(size, size, &leaf, &proof, &root));
            }
        }
    }

    /// CT's consistency proofs 1→8 (empty), 6→8, 2→5.
    #[test]
    fn consistency_proofs_match_the_known_answers_and_verify() {
        let (store, roots) = build(&ct_leaves());
        let encode = |p: Vec<Hash>| p.iter().map(hex::encode).collect::<Vec<_>>();
        assert_eq!(
            encode(consistency_proof(&store, 6, 8).unwrap()),
            [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        );
        assert_eq!(
            encode(consistency_proof(&store, 2, 5).unwrap()),
            [
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ]
        );
        for old in 0..=8u64 {
            for new in old..=8u64 {
                let proof = consistency_proof(&store, old, new).unwrap();
                let old_root = if old == 0 {
                    empty_root()
                } else {
                    roots[old as usize - 1]
                };
                let new_root = if new == 0 {
                    empty_root()
                } else {
                    roots[new as usize - 1]
                };
                assert!(
                    verify_consistency(old, new, &old_root, &new_root, &proof),
                    "{old}->{new}"
                );
                if old > 0 && old < new {
                    let forked = node_hash(&old_root, &old_root);
                    assert!(
                        !verify_consistency(old, new, &forked, &new_root, &proof),
                        "{old}->{new}"
                    );
                    assert!(
                        !verify_consistency(old, new, &old_root, &forked, &proof),
                        "{old}->{new}"
                    );
                }
            }
        }
    }

    #[test]
    fn needed_lists_exactly_the_nodes_a_proof_reads() {
        let (store, _) = build(&ct_leaves());
        let ids = needed(|n| inclusion_proof(n, 5, 7));
        let only: HashMap<NodeId, Hash> = ids.iter().map(|id| (*id, store[id])).collect();
        assert_eq!(inclusion_proof(&only, 5, 7), inclusion_proof(&store, 5, 7));
        assert!(ids.len() <= 4, "{ids:?}");
        assert_eq!(root(&HashMap::new(), 3), Err(MissingNode((1, 0))));
    }
}
