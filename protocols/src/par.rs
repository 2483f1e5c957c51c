//! Splitting pure computation over a few scoped threads: no I/O, no shared state beyond what the work reads.

use std::ops::Range;
use std::sync::OnceLock;

/// The most threads one split uses.
const MAX_THREADS: usize = 4;

/// The threads a split uses: the cores this process may run on, at most [`MAX_THREADS`]. Asked once, since
/// asking reads the scheduler's affinity and the cgroup's quota (tens of microseconds).
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(MAX_THREADS)
    })
}

/// `f` on up to four contiguous ranges that cover `0..n` in order, the first ones each on a scoped thread and
/// the last on the calling thread, and their results in range order; one range (`0..n`, on the calling thread)
/// when the machine has one core or `n < min_split`. A thread the system will not start has its range run on
/// the calling thread instead, so the split never fails; a panic in `f` is passed on.
pub(crate) fn ranges<U: Send>(
    n: usize,
    min_split: usize,
    f: impl Fn(Range<usize>) -> U + Sync,
) -> Vec<U> {
    // The number of cores is asked for only when the work is large enough to split.
    if n < min_split.max(2) || threads() < 2 {
        return vec![f(0..n)];
    }
    let per = n.div_ceil(threads());
    let parts: Vec<Range<usize>> = (0..n)
        .step_by(per)
        .map(|start| start..(start + per).min(n))
        .collect();
    let f = &f;
    std::thread::scope(|scope| {
        let (last, spawned) = parts.split_last().expect("n >= 2 gives a range");
        let started: Vec<_> = spawned
            .iter()
            .map(|r| {
                let mine = r.clone();
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || f(mine))
                    .map_err(|_| r.clone())
            })
            .collect();
        let mine = f(last.clone());
        let mut out: Vec<U> = started
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                Err(r) => f(r),
            })
            .collect();
        out.push(mine);
        out
    })
}

/// `f(j, &items[j])` for every item, in order, split over up to four scoped threads ([`ranges`]) when there are
/// at least 16 items.
pub(crate) fn map<T: Sync, U: Send>(items: &[T], f: impl Fn(usize, &T) -> U + Sync) -> Vec<U> {
    ranges(items.len(), 16, |r| {
        r.map(|j| f(j, &items[j])).collect::<Vec<U>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_work_once_in_order() {
        for n in [0usize, 1, 2, 3, 15, 16, 17, 100, 1001] {
            for min in [1usize, 16, 2000] {
                let parts = ranges(n, min, |r| r);
                assert_eq!(parts.first().map_or(0, |r| r.start), 0);
                assert_eq!(parts.last().map_or(0, |r| r.end), n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "n {n}: contiguous and in order");
                }
                assert!(parts.len() <= MAX_THREADS);
                if n < min {
                    assert_eq!(parts, vec![0..n]);
                }
            }
        }
    }

    #[test]
    fn map_keeps_item_order() {
        let items: Vec<u64> = (0..1000).collect();
        let out = map(&items, |j, &x| (j as u64) * 1000 + x);
        assert_eq!(out, (0..1000).map(|j| j * 1001).collect::<Vec<_>>());
    }
}
