//! Grouped releases over public keys: one noisy count or clamped sum per group, the groups public (the months
//! of a dataset's public window, or the values of a public category set), released as one vector.
//!
//! # Citations
//! * \[McS09\] McSherry, *Privacy Integrated Queries*, SIGMOD 2009 (parallel composition over disjoint parts).
//! * \[DR14\] Dwork, Roth, *The Algorithmic Foundations of Differential Privacy*, 3.3 (the Laplace mechanism on
//!   a vector of L1 sensitivity `D`).
//!
//! # Semantics and proof sketch
//! Each row has a group index `g` in `0..groups` (a public key, found from the row, so part of the data) and a
//! value. The exact answer is the vector of per-group counts, or of per-group sums of the values clamped into
//! `[lo, hi]`; rows whose index is out of range count nowhere. Neighbouring datasets differ by at most `d_in`
//! rows (the privacy unit's contribution bound). Each such row moves exactly one entry of the vector, by at
//! most 1 (count) or `M = max(|lo|, |hi|)` (sum), so the vector moves by at most `d_in` (`d_in * M`) in the L1
//! norm, and at most as much in the L2 norm (which never exceeds the L1 norm): **the whole vector has the
//! sensitivity of one ungrouped count (sum)**, whichever groups the unit's rows fall in, and one noise draw
//! per group at the ungrouped scale costs what one ungrouped release costs. Under an event unit (`d_in = 1`)
//! this is parallel composition \[McS09\]: the groups are disjoint and a payment is in one of them. Under a
//! month unit grouped by month, all of a unit's rows are in one group (one month), so the same holds group
//! by group; grouped by category, a month's rows may spread over several groups, but their total L1 (and
//! L2) change is still at most `d_in` (`d_in * M`), the ungrouped sensitivity. No grouping costs more than
//! the ungrouped release; none costs less either (the bound is reached when the unit's rows share a group).
//!
//! Counts are OpenDP's `make_count_by_categories` over the group indices (its own stability map); sums are a
//! transformation built here on rows `[index, value]` with the stability map `d_in * M` argued above, into
//! OpenDP's L1 (Laplace) or L2 (Gaussian) distance, chained with OpenDP's vector noise, so the charge is OpenDP's
//! privacy map of that chain.
//!
//! # Runtime
//! One pass over the rows with one accumulator per group, then one noise draw per group.
//!
//! # Utility
//! Every group's noise has the ungrouped release's scale, so each entry's accuracy is the ungrouped one's.

use opendp::core::{Function, Metric, MetricSpace, StabilityMap, Transformation};
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::error::Fallible;
use opendp::metrics::SymmetricDistance;
use opendp::transformations::{make_count_by_categories, CountByCategoriesConstant};

#[cfg(test)]
mod tests;

/// Rows per group: `counts[g]` is the number of `keys` equal to `g` (keys at or past `groups` count nowhere).
pub fn group_counts(keys: &[u32], groups: u32) -> Vec<i64> {
    let mut counts = vec![0i64; groups as usize];
    for k in keys {
        if let Some(c) = counts.get_mut(*k as usize) {
            *c += 1;
        }
    }
    counts
}

/// Per-group sums of `values` clamped into `[lo, hi]`, row `i` in group `keys[i]` (rows past either slice's
/// end, or with a key at or past `groups`, count nowhere); exact in 128 bits, then saturated into `i64`.
pub fn group_sums(keys: &[u32], values: &[i64], lo: i64, hi: i64, groups: u32) -> Vec<i64> {
    let mut sums = vec![0i128; groups as usize];
    for (k, v) in keys.iter().zip(values) {
        if let Some(s) = sums.get_mut(*k as usize) {
            *s += i128::from((*v).clamp(lo, hi));
        }
    }
    sums.into_iter()
        .map(|s| s.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
        .collect()
}

/// OpenDP's `make_count_by_categories` over group indices `0..groups` (no null category), into the metric `MO`
/// (L1 for Laplace, L2 for Gaussian noise): the transformation [`group_counts`] reproduces.
pub fn opendp_group_counts<MO>(
    groups: u32,
) -> Fallible<
    Transformation<
        VectorDomain<AtomDomain<i64>>,
        SymmetricDistance,
        VectorDomain<AtomDomain<i64>>,
        MO,
    >,
>
where
    MO: 'static + CountByCategoriesConstant<i64> + Metric<Distance = i64> + Default,
    (VectorDomain<AtomDomain<i64>>, MO): MetricSpace,
{
    make_count_by_categories::<MO, i64, i64>(
        VectorDomain::new(AtomDomain::default()),
        SymmetricDistance,
        (0..i64::from(groups)).collect(),
        false,
    )
}

/// Per-group clamped sums over rows `[index, value]` into the metric `MO` (L1 or L2 over `i64`), with the
/// stability map `d_in * max(|lo|, |hi|)` of the module notes: the transformation [`group_sums`] reproduces.
pub fn opendp_group_sums<MO>(
    lo: i64,
    hi: i64,
    groups: u32,
) -> Fallible<
    Transformation<
        VectorDomain<VectorDomain<AtomDomain<i64>>>,
        SymmetricDistance,
        VectorDomain<AtomDomain<i64>>,
        MO,
    >,
>
where
    MO: 'static + Metric<Distance = i64> + Default,
    (VectorDomain<AtomDomain<i64>>, MO): MetricSpace,
{
    let magnitude = lo.unsigned_abs().max(hi.unsigned_abs());
    let magnitude = i64::try_from(magnitude)
        .map_err(|_| opendp::error::Error::from(opendp::error::ErrorVariant::MakeTransformation))?;
    type Rows = VectorDomain<VectorDomain<AtomDomain<i64>>>;
    Transformation::<Rows, SymmetricDistance, VectorDomain<AtomDomain<i64>>, MO>::new(
        VectorDomain::new(VectorDomain::new(AtomDomain::default()).with_size(2)),
        SymmetricDistance,
        VectorDomain::new(AtomDomain::default()).with_size(groups as usize),
        MO::default(),
        Function::new(move |rows: &Vec<Vec<i64>>| {
            let (keys, values): (Vec<u32>, Vec<i64>) = rows
                .iter()
                .filter_map(|r| match r.as_slice() {
                    [k, v] => Some((u32::try_from(*k).unwrap_or(u32::MAX), *v)),
                    _ => None,
                })
                .unzip();
            group_sums(&keys, &values, lo, hi, groups)
        }),
        StabilityMap::new_fallible(move |d_in: &u32| {
            i64::from(*d_in)
                .checked_mul(magnitude)
                .ok_or_else(|| opendp::error::Error::from(opendp::error::ErrorVariant::FailedMap))
        }),
    )
}
