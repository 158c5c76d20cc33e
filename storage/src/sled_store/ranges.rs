//! A set of sequence numbers kept as disjoint, non-adjacent half-open ranges.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::queue::Seq;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RangeSet {
    /// start -> end; disjoint and never touching (touching ranges are merged).
    map: BTreeMap<Seq, Seq>,
}

impl RangeSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn first(&self) -> Option<Range<Seq>> {
        self.map.iter().next().map(|(&s, &e)| s..e)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Range<Seq>> + '_ {
        self.map.iter().map(|(&s, &e)| s..e)
    }

    pub(crate) fn insert(&mut self, r: Range<Seq>) {
        if r.start >= r.end {
            return;
        }
        let (mut start, mut end) = (r.start, r.end);
        // Merge with a range starting at or before `start` that reaches it.
        if let Some((&s, &e)) = self.map.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.map.remove(&s);
            }
        }
        // Absorb every range starting inside [start, end].
        while let Some((&s, &e)) = self.map.range(start..=end).next() {
            end = end.max(e);
            self.map.remove(&s);
        }
        self.map.insert(start, end);
    }

    pub(crate) fn remove(&mut self, r: Range<Seq>) {
        if r.start >= r.end {
            return;
        }
        let mut touched: Vec<(Seq, Seq)> = Vec::new();
        if let Some((&s, &e)) = self.map.range(..r.start).next_back() {
            if e > r.start {
                touched.push((s, e));
            }
        }
        touched.extend(self.map.range(r.start..r.end).map(|(&s, &e)| (s, e)));
        for (s, e) in touched {
            self.map.remove(&s);
            if s < r.start {
                self.map.insert(s, r.start);
            }
            if e > r.end {
                self.map.insert(r.end, e);
            }
        }
    }

    /// True if every seq of `r` is in the set.
    pub(crate) fn contains_range(&self, r: &Range<Seq>) -> bool {
        if r.start >= r.end {
            return true;
        }
        match self.map.range(..=r.start).next_back() {
            Some((_, &e)) => e >= r.end,
            None => false,
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, seq: Seq) -> bool {
        self.contains_range(&(seq..seq + 1))
    }

    /// Forgets everything below `low`.
    pub(crate) fn remove_below(&mut self, low: Seq) {
        if low > 0 {
            self.remove(0..low);
        }
    }

    /// Number of seqs in the set that fall in `r`.
    pub(crate) fn count_in(&self, r: &Range<Seq>) -> u64 {
        let mut n = 0;
        let lead = self.map.range(..r.start).next_back().map(|(&s, &e)| (s, e));
        for (s, e) in lead
            .into_iter()
            .chain(self.map.range(r.start..r.end).map(|(&s, &e)| (s, e)))
        {
            let (a, b) = (s.max(r.start), e.min(r.end));
            if a < b {
                n += b - a;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_merge() {
        let mut s = RangeSet::new();
        s.insert(5..10);
        s.insert(0..3);
        s.insert(3..5);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..10]);
        s.remove(2..4);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..2, 4..10]);
        assert!(s.contains_range(&(4..10)));
        assert!(!s.contains_range(&(1..5)));
        assert_eq!(s.count_in(&(1..6)), 3);
        s.insert(20..30);
        s.insert(1..25);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..30]);
        s.remove_below(29);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![29..30]);
        assert!(s.contains(29) && !s.contains(28));
    }
}
