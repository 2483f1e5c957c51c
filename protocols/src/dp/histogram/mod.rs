//! Histogram over public bin edges: count the rows in each bin, then add discrete noise to every count.
//!
//! # Citations
//! * \[DMNS06\] Dwork, McSherry, Nissim, Smith, *Calibrating Noise to Sensitivity in Private Data Analysis*.
//! * \[CKS20\] Canonne, Kamath, Steinke, *The Discrete Gaussian for Differential Privacy*.
//!
//! # Semantics and proof sketch
//! With strictly increasing public edges `e_0 < ... < e_{m-1}` there are `m + 1` bins; a row `v` falls in bin
//! `#{j : e_j <= v}` (bin 0 is everything below `e_0`, bin `m` everything at or above `e_{m-1}`). This is
//! OpenDP's `make_find_bin`; counting the bins is `make_count_by_categories` over the categories `0..=m`
//! (no null category). Adding or removing one row changes one count by one, so `d_in` rows move the count
//! vector by at most `d_in` in L1 and in L2, which is OpenDP's stability map (constant 1). [`bin_counts`]
//! computes the same function (`tests.rs` checks it against OpenDP's transformation); a count cannot
//! saturate since a slice has fewer than `i64::MAX` rows.
//!
//! # Runtime
//! One pass, `O(n log m)` (a branch-free linear scan for up to 32 edges), plus `O(m)` noise draws.
//!
//! # Utility
//! Each count's error is the noise alone; [`super::Plan::accuracy`] is per bin, not simultaneous.

use opendp::core::Transformation;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::error::Fallible;
use opendp::metrics::SymmetricDistance;
use opendp::transformations::{make_count_by_categories, make_find_bin, CountByCategoriesConstant};

#[cfg(test)]
mod tests;

/// Counts of `values` in the `edges.len() + 1` bins described in the module docs.
///
/// Requires strictly increasing `edges`; callers check that when planning.
pub fn bin_counts(values: &[i64], edges: &[i64]) -> Vec<i64> {
    let mut counts = vec![0i64; edges.len() + 1];
    if edges.len() <= 32 {
        for v in values {
            let bin = edges.iter().map(|e| (*e <= *v) as usize).sum::<usize>();
            counts[bin] += 1;
        }
    } else {
        for v in values {
            counts[edges.partition_point(|e| *e <= *v)] += 1;
        }
    }
    counts
}

/// `make_find_bin >> make_count_by_categories` with output metric `M` (L1 for Laplace, L2 for Gaussian
/// noise): the OpenDP transformation [`bin_counts`] reproduces.
pub fn opendp_histogram<MO>(
    edges: &[i64],
) -> Fallible<
    Transformation<
        VectorDomain<AtomDomain<i64>>,
        SymmetricDistance,
        VectorDomain<AtomDomain<i64>>,
        MO,
    >,
>
where
    MO: 'static + CountByCategoriesConstant<i64> + opendp::core::Metric<Distance = i64> + Default,
    (VectorDomain<AtomDomain<i64>>, MO): opendp::core::MetricSpace,
{
    let find = make_find_bin::<SymmetricDistance, i64>(
        VectorDomain::new(AtomDomain::default()),
        SymmetricDistance,
        edges.to_vec(),
    )?;
    let count = make_count_by_categories::<MO, usize, i64>(
        find.output_domain.clone(),
        SymmetricDistance,
        (0..=edges.len()).collect(),
        false,
    )?;
    find >> count
}
