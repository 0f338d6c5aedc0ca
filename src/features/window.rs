//! Exact sliding windows at day granularity.
//!
//! A user's recent activity is a short list of day buckets, one per *active* day, sorted by day
//! and pruned beyond the longest configured window (never below the 90 days the fixed trend
//! windows read, see [`Windows::kept_days`]). A window sum is then an exact recount of the events
//! whose day falls in the window, never a decayed approximation, and a late event is folded into
//! its own day's bucket wherever that sits. Memory is proportional to the user's active days
//! within the kept days (bounded by them), not to their number of events.

use std::fmt;
use std::str::FromStr;

use crate::event::{Event, EventKind};
use crate::{Millis, DAY_MS};

/// Most windows one engine computes: each window adds up to eight features and a pass over the
/// same buckets, and four (a week, a month, a quarter, a year) cover what churn models use.
pub const MAX_WINDOWS: usize = 4;

/// Longest window accepted, in days. A year covers annual purchase cycles; beyond it the day
/// numbers of the packed records and the per-user memory grow for little signal.
pub const MAX_HORIZON_DAYS: u16 = 365;

/// Days of history kept whatever the windows: the trend features, the lifecycle stage and the
/// policy's value tier read fixed 30- and 90-day windows, so a shorter window set cannot prune
/// below this.
pub const MIN_KEPT_DAYS: u32 = 90;

/// The fixed month the trends and lifecycle compare against the two months before it.
pub const TREND_RECENT_DAYS: u16 = 30;

/// The fixed quarter whose first two months are the trends' baseline.
pub const TREND_BASE_DAYS: u16 = 90;

/// Most horizons summed per scoring: the configured windows plus the two fixed trend windows.
pub const MAX_PLAN: usize = MAX_WINDOWS + 2;

/// The configured window horizons, in days: 1 to [`MAX_WINDOWS`] ascending distinct values in
/// `1..=MAX_HORIZON_DAYS`. Inline and `Copy`, so configurations and layouts carry it without
/// allocating; the only way to build one is through the checks of [`Windows::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Windows {
    days: [u16; MAX_WINDOWS],
    len: u8,
}

/// Why a list of horizons is not a window set. Messages name the rule broken and the value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WindowsError {
    #[error("no window given: list 1 to {MAX_WINDOWS} horizons in days, e.g. 7,30,90")]
    Empty,
    #[error("{0} windows given, at most {MAX_WINDOWS} are supported")]
    TooMany(usize),
    #[error("window {0:?} is not a whole number of days")]
    NotANumber(String),
    #[error("window of {0} days is outside 1..={MAX_HORIZON_DAYS}")]
    OutOfRange(u64),
    #[error("windows must be ascending and distinct: {0} is followed by {1}")]
    NotAscending(u16, u16),
}

impl Windows {
    /// Checks and stores `days`.
    pub fn new(days: &[u64]) -> Result<Windows, WindowsError> {
        if days.is_empty() {
            return Err(WindowsError::Empty);
        }
        if days.len() > MAX_WINDOWS {
            return Err(WindowsError::TooMany(days.len()));
        }
        let mut out = Windows {
            days: [0; MAX_WINDOWS],
            len: 0,
        };
        for &d in days {
            let day = u16::try_from(d)
                .ok()
                .filter(|d| (1..=MAX_HORIZON_DAYS).contains(d))
                .ok_or(WindowsError::OutOfRange(d))?;
            if let Some(&prev) = out.days().last() {
                if day <= prev {
                    return Err(WindowsError::NotAscending(prev, day));
                }
            }
            out.days[usize::from(out.len)] = day;
            out.len += 1;
        }
        Ok(out)
    }

    /// The horizons, ascending.
    pub fn days(&self) -> &[u16] {
        &self.days[..usize::from(self.len)]
    }

    /// The longest horizon.
    pub fn longest(&self) -> u16 {
        self.days().last().copied().unwrap_or(0)
    }

    /// Days of buckets kept per user: the longest window, and never less than the fixed trend
    /// windows need.
    pub fn kept_days(&self) -> u32 {
        u32::from(self.longest()).max(MIN_KEPT_DAYS)
    }
}

impl Default for Windows {
    /// 7, 30 and 90 days: the windows the feature set was designed with and
    /// `models/churn-lr.json` was trained on.
    fn default() -> Windows {
        Windows {
            days: [7, 30, 90, 0],
            len: 3,
        }
    }
}

impl FromStr for Windows {
    type Err = WindowsError;

    /// Parses a comma-separated list such as `7,30,90,180` (spaces around items allowed).
    fn from_str(text: &str) -> Result<Windows, WindowsError> {
        if text.trim().is_empty() {
            return Err(WindowsError::Empty);
        }
        let days = text
            .split(',')
            .map(|item| {
                let item = item.trim();
                item.parse::<u64>()
                    .map_err(|_| WindowsError::NotANumber(item.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Windows::new(&days)
    }
}

impl fmt::Display for Windows {
    /// The same comma-separated form [`Windows::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.days().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Counters for one calendar day (UTC) of one user, in 16 bytes: sized for what a person does in
/// a day. A day that outgrows one (65,535 events, 255 of one kind, 2^32 cents) continues in
/// another bucket of the same day (see [`DayWindows`]), so heavy days are counted exactly at no
/// cost to ordinary users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayBucket {
    /// Days since the Unix epoch (u16 lasts until 2149).
    pub day: u16,
    pub events: u16,
    /// Spend in cents: integer sums make windows exact and order-independent.
    pub spend_cents: u32,
    pub page_views: u8,
    pub logins: u8,
    pub cart_adds: u8,
    pub purchases: u8,
    pub refunds: u8,
    pub complaints: u8,
    pub coupons: u8,
    pub social: u8,
}

const _: () = assert!(std::mem::size_of::<DayBucket>() == 16);

impl DayBucket {
    /// Whether one more event of `kind` worth `amount_cents` fits every counter it touches.
    fn fits(&self, kind: EventKind, amount_cents: u32) -> bool {
        let counter = match kind {
            EventKind::Login => self.logins,
            EventKind::PageView => self.page_views,
            EventKind::CartAdd => self.cart_adds,
            EventKind::Purchase => {
                if self.spend_cents.checked_add(amount_cents).is_none() {
                    return false;
                }
                self.purchases
            }
            EventKind::Refund => self.refunds,
            EventKind::Complaint => self.complaints,
            EventKind::CouponRedeem => self.coupons,
            EventKind::Review | EventKind::Share => self.social,
            _ => 0,
        };
        self.events < u16::MAX && counter < u8::MAX
    }

    /// Counts one event; the caller checked [`DayBucket::fits`] (saturating all the same, so a
    /// mistake undercounts instead of wrapping).
    fn add(&mut self, kind: EventKind, amount_cents: u32) {
        self.events = self.events.saturating_add(1);
        match kind {
            EventKind::Login => self.logins = self.logins.saturating_add(1),
            EventKind::PageView => self.page_views = self.page_views.saturating_add(1),
            EventKind::CartAdd => self.cart_adds = self.cart_adds.saturating_add(1),
            EventKind::Purchase => {
                self.purchases = self.purchases.saturating_add(1);
                self.spend_cents = self.spend_cents.saturating_add(amount_cents);
            }
            EventKind::Refund => self.refunds = self.refunds.saturating_add(1),
            EventKind::Complaint => self.complaints = self.complaints.saturating_add(1),
            EventKind::CouponRedeem => self.coupons = self.coupons.saturating_add(1),
            EventKind::Review | EventKind::Share => self.social = self.social.saturating_add(1),
            _ => {}
        }
    }
}

/// Sums of the buckets whose day lies in `(today - days, today]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowTotals {
    pub events: u32,
    pub logins: u32,
    pub page_views: u32,
    pub cart_adds: u32,
    pub purchases: u32,
    pub refunds: u32,
    pub complaints: u32,
    pub coupons: u32,
    pub social: u32,
    pub spend_cents: u64,
    pub active_days: u32,
}

impl WindowTotals {
    /// Adds the totals of a window nested inside this one (prefix sums over horizons).
    fn merge(&mut self, o: &WindowTotals) {
        self.events += o.events;
        self.logins += o.logins;
        self.page_views += o.page_views;
        self.cart_adds += o.cart_adds;
        self.purchases += o.purchases;
        self.refunds += o.refunds;
        self.complaints += o.complaints;
        self.coupons += o.coupons;
        self.social += o.social;
        self.spend_cents += o.spend_cents;
        self.active_days += o.active_days;
    }

    /// Adds a bucket; `new_day` unless an earlier bucket of the same day was added already.
    fn add(&mut self, b: &DayBucket, new_day: bool) {
        self.events += u32::from(b.events);
        self.logins += u32::from(b.logins);
        self.page_views += u32::from(b.page_views);
        self.cart_adds += u32::from(b.cart_adds);
        self.purchases += u32::from(b.purchases);
        self.refunds += u32::from(b.refunds);
        self.complaints += u32::from(b.complaints);
        self.coupons += u32::from(b.coupons);
        self.social += u32::from(b.social);
        self.spend_cents += u64::from(b.spend_cents);
        self.active_days += u32::from(new_day);
    }
}

/// The active-day buckets of one user, sorted by day. A day has one bucket, unless it outgrew
/// one ([`DayBucket`]): then its further buckets follow it, with the same day.
///
/// Layout (40 bytes inline plus a few bytes per older active day): the latest active day is
/// kept unpacked in `hot`, since nearly every event lands on it; older days are packed into one
/// byte string, oldest first, each record being
///
/// ```text
/// varint(days since the previous record; 0 for the first, which is at `first_day`, and for
///        a further bucket of the previous record's day)
/// varint(mask of non-zero counters, bit i = FIELDS[i])
/// varint(counter) for each bit set, in bit order
/// ```
///
/// A typical day (a couple of page views) packs into 4 bytes instead of 16. Packing is exact:
/// unpacking gives the bucket back, so windows stay exact recounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayWindows {
    packed: Box<[u8]>,
    hot: DayBucket,
    /// Day of the first packed record.
    first_day: u16,
    /// Day of the last packed record (the one before `hot`).
    last_packed_day: u16,
}

/// Counter order in a packed record's mask: the most frequent first, so a mask of ordinary
/// browsing fits one varint byte.
const FIELDS: usize = 10;

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`put_varint`] writes for `v`.
fn varint_len(v: u32) -> usize {
    (32 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads a varint at `*pos`, advancing it. The bytes were written by [`put_varint`], so a
/// truncated varint cannot occur; a corrupt one ends at the buffer's end rather than panicking.
#[inline]
fn get_varint(buf: &[u8], pos: &mut usize) -> u32 {
    // Most values (day deltas, masks, daily counts) fit one byte: every scoring decodes a
    // user's packed days, so that case skips the loop.
    if let Some(&b) = buf.get(*pos) {
        if b < 0x80 {
            *pos += 1;
            return u32::from(b);
        }
    }
    let mut v = 0u32;
    let mut shift = 0;
    while let Some(&b) = buf.get(*pos) {
        *pos += 1;
        v |= u32::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    v
}

impl DayBucket {
    fn fields(&self) -> [u32; FIELDS] {
        [
            u32::from(self.events),
            u32::from(self.page_views),
            u32::from(self.logins),
            u32::from(self.cart_adds),
            u32::from(self.purchases),
            self.spend_cents,
            u32::from(self.social),
            u32::from(self.coupons),
            u32::from(self.refunds),
            u32::from(self.complaints),
        ]
    }

    fn from_fields(day: u16, f: [u32; FIELDS]) -> DayBucket {
        let small = |v: u32| u8::try_from(v).unwrap_or(u8::MAX);
        DayBucket {
            day,
            events: u16::try_from(f[0]).unwrap_or(u16::MAX),
            page_views: small(f[1]),
            logins: small(f[2]),
            cart_adds: small(f[3]),
            purchases: small(f[4]),
            spend_cents: f[5],
            social: small(f[6]),
            coupons: small(f[7]),
            refunds: small(f[8]),
            complaints: small(f[9]),
        }
    }

    /// Bytes [`DayBucket::pack`] writes.
    fn packed_len(&self, delta: u16) -> usize {
        let fields = self.fields();
        let mask = fields
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .fold(0u32, |m, (i, _)| m | 1 << i);
        varint_len(u32::from(delta))
            + varint_len(mask)
            + fields
                .iter()
                .map(|v| if *v != 0 { varint_len(*v) } else { 0 })
                .sum::<usize>()
    }

    fn pack(&self, delta: u16, out: &mut Vec<u8>) {
        let fields = self.fields();
        let mask = fields
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .fold(0u32, |m, (i, _)| m | 1 << i);
        put_varint(out, u32::from(delta));
        put_varint(out, mask);
        for v in fields.iter().filter(|v| **v != 0) {
            put_varint(out, *v);
        }
    }
}

/// Iterates the packed records as (byte offset of the record, bucket).
struct Packed<'a> {
    buf: &'a [u8],
    pos: usize,
    day: u16,
}

impl Iterator for Packed<'_> {
    type Item = (usize, DayBucket);

    fn next(&mut self) -> Option<(usize, DayBucket)> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let delta = get_varint(self.buf, &mut self.pos);
        self.day = self
            .day
            .saturating_add(u16::try_from(delta).unwrap_or(u16::MAX));
        let mask = get_varint(self.buf, &mut self.pos);
        let mut f = [0u32; FIELDS];
        // The set bits only, in ascending order (a typical day has two or three).
        let mut bits = mask & ((1 << FIELDS) - 1);
        while bits != 0 {
            f[bits.trailing_zeros() as usize] = get_varint(self.buf, &mut self.pos);
            bits &= bits - 1;
        }
        Some((start, DayBucket::from_fields(self.day, f)))
    }
}

/// Day number (days since the Unix epoch) of an instant.
pub fn day_of(ts: Millis) -> u32 {
    u32::try_from(ts.div_euclid(DAY_MS)).unwrap_or(0)
}

/// Rounds a money amount to whole cents, saturating at `u32::MAX` cents (amounts are checked
/// against [`crate::event::MAX_AMOUNT`], far below, before they reach here).
pub fn to_cents(amount: f64) -> u32 {
    let cents = (amount * 100.0).round();
    if cents <= 0.0 {
        0
    } else if cents >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        cents as u32
    }
}

impl DayWindows {
    fn packed(&self) -> Packed<'_> {
        Packed {
            buf: &self.packed,
            pos: 0,
            day: self.first_day,
        }
    }

    fn has_hot(&self) -> bool {
        self.hot.events != 0
    }

    /// Every held bucket, oldest first (tests, persistence).
    pub fn buckets(&self) -> impl Iterator<Item = DayBucket> + '_ {
        self.packed()
            .map(|(_, b)| b)
            .chain(self.has_hot().then_some(self.hot))
    }

    /// Replaces the content with `buckets` (ascending by day; a heavy day's buckets in a row).
    fn rebuild(&mut self, buckets: &[DayBucket]) {
        *self = DayWindows::default();
        let Some((last, older)) = buckets.split_last() else {
            return;
        };
        let mut out = Vec::new();
        let mut prev = older.first().map_or(0, |b| b.day);
        self.first_day = prev;
        for b in older {
            b.pack(b.day - prev, &mut out);
            prev = b.day;
        }
        self.last_packed_day = prev;
        self.packed = out.into_boxed_slice();
        self.hot = *last;
    }

    /// Folds one event into its day's bucket, wherever that day sits (late events included).
    pub fn add(&mut self, event: &Event) {
        let day = u16::try_from(day_of(event.ts)).unwrap_or(u16::MAX);
        let cents = to_cents(event.amount);
        if !self.has_hot() {
            self.hot = DayBucket {
                day,
                ..DayBucket::default()
            };
        }
        if day >= self.hot.day {
            if day > self.hot.day || !self.hot.fits(event.kind, cents) {
                // A new latest day, or a day too heavy for one bucket: pack the hot bucket and
                // start another.
                self.pack_hot();
                self.hot = DayBucket {
                    day,
                    ..DayBucket::default()
                };
            }
            self.hot.add(event.kind, cents);
        } else {
            // Late into an older day: rare, so unpack, fold in and repack.
            let mut all: Vec<DayBucket> = self.buckets().collect();
            // Into the day's last bucket, or a new one after it when that one is full.
            let after = all.partition_point(|b| b.day <= day);
            let open = after
                .checked_sub(1)
                .filter(|&i| all[i].day == day && all[i].fits(event.kind, cents));
            match open {
                Some(i) => all[i].add(event.kind, cents),
                None => {
                    let mut b = DayBucket {
                        day,
                        ..DayBucket::default()
                    };
                    b.add(event.kind, cents);
                    all.insert(after, b);
                }
            }
            self.rebuild(&all);
        }
    }

    /// Appends the hot bucket to the packed records. Exact growth, since a new active day is
    /// rare next to events and doubling would leave slack in every user's buffer.
    fn pack_hot(&mut self) {
        let mut out = std::mem::take(&mut self.packed).into_vec();
        let delta = if out.is_empty() {
            self.first_day = self.hot.day;
            0
        } else {
            self.hot.day - self.last_packed_day
        };
        // Grown once, by exactly the record's length, without a scratch buffer on the heap.
        out.reserve_exact(self.hot.packed_len(delta));
        self.hot.pack(delta, &mut out);
        self.packed = out.into_boxed_slice();
        self.last_packed_day = self.hot.day;
    }

    /// Drops the buckets that no window of at most `keep_days` days ending at `today` or later
    /// can contain.
    pub fn prune(&mut self, today: u32, keep_days: u32) {
        let oldest_kept = today.saturating_sub(keep_days.saturating_sub(1));
        if !self.has_hot() {
            return;
        }
        if u32::from(self.hot.day) < oldest_kept {
            *self = DayWindows::default();
            return;
        }
        if self.packed.is_empty() || u32::from(self.first_day) >= oldest_kept {
            return;
        }
        // Cut at the first record still inside; rewrite its delta to 0 since it becomes first.
        let cut = self.packed().find(|(_, b)| u32::from(b.day) >= oldest_kept);
        match cut {
            None => {
                self.packed = Box::default();
                self.first_day = 0;
                self.last_packed_day = 0;
            }
            Some((start, bucket)) => {
                let mut pos = start;
                get_varint(&self.packed, &mut pos);
                let mut out = Vec::with_capacity(1 + self.packed.len() - pos);
                put_varint(&mut out, 0);
                out.extend_from_slice(&self.packed[pos..]);
                self.packed = out.into_boxed_slice();
                self.first_day = bucket.day;
            }
        }
    }

    /// Totals of the window of `days` days ending at (and including) `today`.
    pub fn totals(&self, today: u32, days: u32) -> WindowTotals {
        let [t] = self.totals_nested(today, [days]);
        t
    }

    /// Totals of several windows ending at `today` in one pass over the buckets.
    pub fn totals_nested<const N: usize>(&self, today: u32, days: [u32; N]) -> [WindowTotals; N] {
        let mut out = [WindowTotals::default(); N];
        let mut previous = None;
        for b in self.buckets() {
            let new_day = previous.replace(b.day) != Some(b.day);
            let day = u32::from(b.day);
            if day > today {
                continue;
            }
            let age = today - day;
            for (i, d) in days.iter().enumerate() {
                if age < *d {
                    out[i].add(&b, new_day);
                }
            }
        }
        out
    }

    /// Totals of the windows of `days` days (ascending, at most [`MAX_PLAN`]) ending at `today`,
    /// in one pass over the buckets, into the first `days.len()` entries of the result. Each
    /// bucket is added to the shortest window holding it only, and the windows are then
    /// accumulated from shortest to longest: nested windows share their sums instead of adding
    /// every bucket once per window.
    pub fn totals_ascending(&self, today: u32, days: &[u16]) -> [WindowTotals; MAX_PLAN] {
        debug_assert!(days.len() <= MAX_PLAN && days.windows(2).all(|p| p[0] < p[1]));
        let mut out = [WindowTotals::default(); MAX_PLAN];
        let n = days.len().min(MAX_PLAN);
        let mut previous = None;
        for b in self.buckets() {
            let new_day = previous.replace(b.day) != Some(b.day);
            let day = u32::from(b.day);
            if day > today {
                continue;
            }
            let age = today - day;
            if let Some(i) = days[..n].iter().position(|d| age < u32::from(*d)) {
                out[i].add(&b, new_day);
            }
        }
        for i in 1..n {
            let shorter = out[i - 1];
            out[i].merge(&shorter);
        }
        out
    }

    /// The raw parts, for persistence: the latest day, the packed older days and the day of the
    /// first packed record.
    pub fn to_parts(&self) -> (DayBucket, &[u8], u16) {
        (self.hot, &self.packed, self.first_day)
    }

    /// Rebuilds windows from [`Self::to_parts`], checking that the packed records decode to
    /// ascending days (a day repeated by the further buckets of a heavy day) up to the latest
    /// one (persisted bytes are input like any other).
    pub fn from_parts(hot: DayBucket, packed: &[u8], first_day: u16) -> Result<DayWindows, String> {
        let mut w = DayWindows {
            packed: packed.into(),
            hot,
            first_day,
            last_packed_day: first_day,
        };
        let mut prev: Option<u16> = None;
        let mut end = 0;
        let mut it = w.packed();
        while let Some((_, b)) = it.next() {
            if prev.is_some_and(|p| b.day < p) {
                return Err(format!("packed days not ascending at day {}", b.day));
            }
            if b.events == 0 {
                return Err(format!("packed day {} holds no event", b.day));
            }
            prev = Some(b.day);
            end = it.pos;
        }
        if end != packed.len() {
            return Err("packed days end inside a record".into());
        }
        if let Some(last) = prev {
            if w.hot.events == 0 || w.hot.day < last {
                return Err("the latest day must follow the packed days".into());
            }
            w.last_packed_day = last;
        }
        Ok(w)
    }

    /// Number of active days held (memory accounting and tests).
    pub fn len(&self) -> usize {
        let mut previous = None;
        self.buckets()
            .filter(|b| previous.replace(b.day) != Some(b.day))
            .count()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        !self.has_hot()
    }

    /// Heap bytes held by the packed days.
    pub fn heap_bytes(&self) -> usize {
        self.packed.len()
    }
}

#[cfg(test)]
mod tests;
