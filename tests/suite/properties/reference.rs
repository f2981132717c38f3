//! Naive reference answers the properties check the crate against: obviously right,
//! and written once for every file that needs them.

use concord::Claim;

/// The segments of a hierarchical name (empty segments ignored, as the detector does).
pub fn segs(s: &str) -> Vec<&str> {
    s.split('/').filter(|x| !x.is_empty()).collect()
}

/// Whether two names overlap: one is a prefix of the other, segment by segment.
pub fn overlap(a: &str, b: &str) -> bool {
    let (a, b) = (segs(a), segs(b));
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Whether two claims collide: they overlap and at least one is exclusive.
pub fn collide(a: &Claim, b: &Claim) -> bool {
    (a.is_exclusive() || b.is_exclusive()) && overlap(a.resource(), b.resource())
}
