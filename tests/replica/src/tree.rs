//! The certified state tree: a labeled tree of the replica's state, turned into an
//! `ic-certification` `HashTree` witness that reveals only the requested paths, and signed
//! into a certificate.

use crate::keys::Keys;
use ic_certification::hash_tree::{
    empty, fork, fork_hash, label, labeled_hash, leaf, leaf_hash, pruned, Hash, HashTree,
};
use ic_certification::Certificate;
use std::collections::BTreeMap;

/// A node of the state tree (IC interface specification, "The system state tree").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabeledTree {
    Leaf(Vec<u8>),
    SubTree(BTreeMap<Vec<u8>, LabeledTree>),
}

impl LabeledTree {
    pub fn subtree() -> LabeledTree {
        LabeledTree::SubTree(BTreeMap::new())
    }

    /// Insert `value` at `path`, creating the subtrees on the way (a leaf on the way is
    /// replaced: the state tree never has a value and children at one path).
    pub fn insert(&mut self, path: &[&[u8]], value: LabeledTree) {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return;
        };
        if let LabeledTree::Leaf(_) = self {
            *self = LabeledTree::subtree();
        }
        if let LabeledTree::SubTree(children) = self {
            children
                .entry(first.to_vec())
                .or_insert_with(LabeledTree::subtree)
                .insert(rest, value);
        }
    }

    pub fn digest(&self) -> Hash {
        match self {
            LabeledTree::Leaf(v) => leaf_hash(v),
            LabeledTree::SubTree(children) => {
                let digests: Vec<(&[u8], Hash)> = children
                    .iter()
                    .map(|(l, t)| (l.as_slice(), labeled_hash(l, &t.digest())))
                    .collect();
                range_digest(&digests)
            }
        }
    }
}

/// Digest of the balanced fork tree over labeled children; must match [`forks`]' shape.
fn range_digest(children: &[(&[u8], Hash)]) -> Hash {
    match children.len() {
        0 => empty::<Vec<u8>>().digest(),
        1 => children[0].1,
        n => {
            let (l, r) = children.split_at(n / 2);
            fork_hash(&range_digest(l), &range_digest(r))
        }
    }
}

/// Balanced forks over the children; ranges with nothing visible collapse into one pruned node.
fn forks(children: &[(&[u8], Hash)], shown: &[Option<HashTree<Vec<u8>>>]) -> HashTree<Vec<u8>> {
    if shown.iter().all(Option::is_none) {
        return if children.is_empty() {
            empty()
        } else {
            pruned(range_digest(children))
        };
    }
    if children.len() == 1 {
        return shown[0].clone().expect("a visible child");
    }
    let mid = children.len() / 2;
    fork(
        forks(&children[..mid], &shown[..mid]),
        forks(&children[mid..], &shown[mid..]),
    )
}

/// The witness of `tree` revealing every value whose path starts with one of `paths`; a
/// requested label that does not exist is proven absent by revealing its neighbours' labels.
pub fn witness(tree: &LabeledTree, paths: &[Vec<Vec<u8>>]) -> HashTree<Vec<u8>> {
    let refs: Vec<&[Vec<u8>]> = paths.iter().map(Vec::as_slice).collect();
    witness_of(tree, &refs)
}

fn witness_of(tree: &LabeledTree, paths: &[&[Vec<u8>]]) -> HashTree<Vec<u8>> {
    if paths.is_empty() {
        return pruned(tree.digest());
    }
    let whole = paths.iter().any(|p| p.is_empty());
    match tree {
        LabeledTree::Leaf(v) => leaf(v.clone()),
        LabeledTree::SubTree(children) => {
            let entries: Vec<(&Vec<u8>, &LabeledTree)> = children.iter().collect();
            let digests: Vec<(&[u8], Hash)> = entries
                .iter()
                .map(|(l, t)| (l.as_slice(), labeled_hash(l, &t.digest())))
                .collect();
            let mut shown: Vec<Option<HashTree<Vec<u8>>>> = vec![None; entries.len()];
            for (i, (l, t)) in entries.iter().enumerate() {
                let sub: Vec<&[Vec<u8>]> = if whole {
                    vec![&[][..]]
                } else {
                    paths
                        .iter()
                        .filter(|p| p[0] == **l)
                        .map(|p| &p[1..])
                        .collect()
                };
                if !sub.is_empty() {
                    shown[i] = Some(label(l.to_vec(), witness_of(t, &sub)));
                }
            }
            if !whole {
                for p in paths {
                    let want = &p[0];
                    if children.contains_key(want) {
                        continue;
                    }
                    let at = entries.partition_point(|(l, _)| *l < want);
                    for j in [at.checked_sub(1), Some(at)].into_iter().flatten() {
                        if j < entries.len() && shown[j].is_none() {
                            let (l, t) = entries[j];
                            shown[j] = Some(label(l.to_vec(), pruned(t.digest())));
                        }
                    }
                }
            }
            forks(&digests, &shown)
        }
    }
}

/// A certificate (CBOR, with the self-describing tag) for the witness of `paths` in `tree`.
pub fn certify(keys: &Keys, tree: &LabeledTree, paths: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let witness = witness(tree, paths);
    debug_assert_eq!(witness.digest(), tree.digest());
    let signature = keys.sign_state_root(&witness.digest());
    let cert = Certificate {
        tree: witness,
        signature,
        delegation: None,
    };
    cbor_self_describing(&cert)
}

/// CBOR with tag 55799 in front, as the IC sends its responses.
pub fn cbor_self_describing<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut ser = serde_cbor::Serializer::new(Vec::new());
    ser.self_describe()
        .and_then(|()| v.serialize(&mut ser))
        .expect("serialising to a Vec cannot fail");
    ser.into_inner()
}

/// Unsigned LEB128 (how the state tree stores `time` and reject codes).
pub fn leb128(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    leb128::write::unsigned(&mut out, n).expect("writing to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_certification::LookupResult;

    fn sample() -> LabeledTree {
        let mut t = LabeledTree::subtree();
        t.insert(&[b"time"], LabeledTree::Leaf(leb128(42)));
        for i in 0u8..9 {
            t.insert(
                &[b"request_status", &[i * 2; 32], b"status"],
                LabeledTree::Leaf(b"replied".to_vec()),
            );
        }
        t.insert(
            &[b"subnet", b"s", b"public_key"],
            LabeledTree::Leaf(vec![1]),
        );
        t
    }

    #[test]
    fn should_reveal_requested_paths_prove_absence_and_keep_the_root_hash() {
        let t = sample();
        let w = witness(
            &t,
            &[
                vec![b"request_status".to_vec(), vec![4; 32]],
                vec![b"request_status".to_vec(), vec![5; 32]],
                vec![b"time".to_vec()],
            ],
        );
        assert_eq!(w.digest(), t.digest());
        assert_eq!(
            w.lookup_path([b"request_status".as_ref(), &[4; 32], b"status"]),
            LookupResult::Found(b"replied".as_ref())
        );
        assert_eq!(
            w.lookup_path([b"request_status".as_ref(), &[5; 32], b"status"]),
            LookupResult::Absent
        );
        assert_eq!(
            w.lookup_path([b"time".as_ref()]),
            LookupResult::Found(leb128(42).as_slice())
        );
        // Not requested: hidden (pruned), so neither found nor provably absent.
        assert_eq!(
            w.lookup_path([b"subnet".as_ref(), b"s", b"public_key"]),
            LookupResult::Unknown
        );
        assert_eq!(
            w.lookup_path([b"request_status".as_ref(), &[16; 32], b"status"]),
            LookupResult::Unknown
        );
        // A fully revealed tree is the tree.
        let all = witness(&t, &[vec![]]);
        assert_eq!(all.digest(), t.digest());
        assert_eq!(
            all.lookup_path([b"subnet".as_ref(), b"s", b"public_key"]),
            LookupResult::Found(&[1][..])
        );
    }
}
