//! Which offset of a partition may be stored while its records are handled out of order.

use std::collections::VecDeque;

/// The offsets of one partition's records in flight, in the order they were received (increasing),
/// each marked when its record is handled.
///
/// A partition's stored offset says "every record before this one is handled": storing record N's
/// offset while an earlier record is still running would lose that record if the process died.
/// So [`OffsetTracker::complete`] only ever returns the last offset of the contiguous prefix of
/// handled records, once it grows. Offsets need not be consecutive (compaction and transaction
/// markers leave gaps): only the records received count.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    /// Records received and not yet part of the handled prefix: `(offset, handled)`, oldest first.
    pending: VecDeque<(i64, bool)>,
    /// The newest offset received, which the next one must be above.
    newest: Option<i64>,
}

/// A record's offset is not above the partition's newest one, so it cannot be tracked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OutOfOrder {
    pub offset: i64,
    pub newest: i64,
}

impl OffsetTracker {
    /// Records that the record at `offset` was received and is being handled.
    pub(crate) fn begin(&mut self, offset: i64) -> Result<(), OutOfOrder> {
        if let Some(newest) = self.newest
            && offset <= newest
        {
            return Err(OutOfOrder { offset, newest });
        }
        self.newest = Some(offset);
        self.pending.push_back((offset, false));
        Ok(())
    }

    /// Marks the record at `offset` handled. Returns the offset of the last record of the handled
    /// prefix when this made the prefix grow (every record received up to it is handled: store
    /// it), `None` otherwise (an earlier record is still running, or `offset` was never begun).
    pub(crate) fn complete(&mut self, offset: i64) -> Option<i64> {
        let index = self.pending.binary_search_by_key(&offset, |&(offset, _)| offset).ok()?;
        self.pending[index].1 = true;
        let mut last = None;
        while let Some(&(offset, true)) = self.pending.front() {
            last = Some(offset);
            self.pending.pop_front();
        }
        last
    }

    /// How many records were received and are not yet in the handled prefix.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Begins `received`, then completes `completed` in that order; `expected[i]` is what the
    /// i-th completion returns.
    fn check(received: &[i64], completed: &[i64], expected: &[Option<i64>]) {
        let mut tracker = OffsetTracker::default();
        for &offset in received {
            tracker.begin(offset).unwrap();
        }
        let stored: Vec<Option<i64>> = completed.iter().map(|&offset| tracker.complete(offset)).collect();
        assert_eq!(stored, expected, "received {received:?}, completed {completed:?}");
    }

    #[test]
    fn only_the_contiguous_prefix_of_handled_records_is_stored() {
        check(&[5], &[5], &[Some(5)]);
        check(&[5, 6, 7], &[5, 6, 7], &[Some(5), Some(6), Some(7)]);
        check(&[5, 6, 7], &[7, 6, 5], &[None, None, Some(7)]);
        check(&[5, 6, 7], &[6, 5, 7], &[None, Some(6), Some(7)]);
        check(&[5, 6, 7, 8], &[5, 7, 8, 6], &[Some(5), None, None, Some(8)]);
        // Gaps in the offsets (compaction, transaction markers) are not waited for.
        check(&[3, 10, 42], &[10, 3, 42], &[None, Some(10), Some(42)]);
        // A completion of an offset never begun, or completed twice, stores nothing.
        check(&[5, 6], &[4, 6, 6, 5], &[None, None, None, Some(6)]);
        check(&[], &[1], &[None]);
    }

    #[test]
    fn offsets_must_increase() {
        let mut tracker = OffsetTracker::default();
        tracker.begin(7).unwrap();
        assert_eq!(tracker.begin(7), Err(OutOfOrder { offset: 7, newest: 7 }));
        assert_eq!(tracker.begin(3), Err(OutOfOrder { offset: 3, newest: 7 }));
        tracker.begin(8).unwrap();
        // Handled records leave the tracker; the order is still enforced.
        assert_eq!(tracker.complete(7), Some(7));
        assert_eq!(tracker.complete(8), Some(8));
        assert_eq!(tracker.pending(), 0);
        assert_eq!(tracker.begin(8), Err(OutOfOrder { offset: 8, newest: 8 }));
    }

    /// Increasing offsets with gaps, and an order in which to complete them.
    fn offsets_and_completion_order() -> impl Strategy<Value = (Vec<i64>, Vec<usize>)> {
        proptest::collection::vec(1..4_i64, 1..80).prop_flat_map(|gaps| {
            let offsets: Vec<i64> = gaps
                .iter()
                .scan(100_i64, |offset, gap| {
                    *offset += gap;
                    Some(*offset)
                })
                .collect();
            let order = Just((0..offsets.len()).collect::<Vec<usize>>()).prop_shuffle();
            (Just(offsets), order)
        })
    }

    proptest! {
        #[test]
        fn any_completion_order_stores_only_growing_contiguous_prefixes(
            (offsets, order) in offsets_and_completion_order()
        ) {
            let mut tracker = OffsetTracker::default();
            for &offset in &offsets {
                tracker.begin(offset).unwrap();
            }
            let mut handled = vec![false; offsets.len()];
            let mut last_stored: Option<i64> = None;
            for index in order {
                handled[index] = true;
                let prefix = handled.iter().take_while(|&&done| done).count();
                let expected = (prefix > 0).then(|| offsets[prefix - 1]);
                match tracker.complete(offsets[index]) {
                    Some(stored) => {
                        // Every record up to the stored one is handled, and the prefix is maximal.
                        prop_assert_eq!(Some(stored), expected);
                        prop_assert!(last_stored.is_none_or(|last| stored > last), "stored offsets only grow");
                        last_stored = Some(stored);
                    }
                    // Nothing stored: the handled prefix did not grow.
                    None => prop_assert_eq!(last_stored, expected),
                }
            }
            prop_assert_eq!(last_stored, offsets.last().copied(), "once all are handled, the last is stored");
            prop_assert_eq!(tracker.pending(), 0);
        }
    }
}
