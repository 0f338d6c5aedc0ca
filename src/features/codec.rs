//! A user's state as bytes: the payload of a changelog record or a local snapshot, so that state
//! can follow its partition to another instance (durable state, issue 6).
//!
//! Little-endian, versioned by its first byte, and as compact as the in-memory layout: the packed
//! day records are copied as they are. Decoding validates everything, because a changelog is
//! input like any other: a corrupt record is an error, never a panic or a silently wrong user.
//!
//! Format 2 records how many days of buckets the writer kept ([`super::Windows::kept_days`]),
//! right after the format byte: a state pruned to 90 days read by an instance whose windows
//! reach 180 would silently undercount its longest windows, so the reader compares (see
//! [`Decoded::kept_days`]). Format 1 records, written before windows were configurable, kept
//! 90 days.
//!
//! Format 3 has the layout of format 2; its packed days may hold a day more than once (the
//! further buckets of a day too heavy for one, see [`DayWindows`]). A build that reads only
//! formats 1 and 2 refuses it by its number rather than misreading such a day as corrupt.

use super::caps::CapState;
use super::state::Instant32;
use super::window::{DayBucket, DayWindows, MAX_HORIZON_DAYS, MIN_KEPT_DAYS};
use super::UserState;

/// Layout version written as the first byte.
pub const FORMAT: u8 = 3;

/// Format 3's layout, written before a day could span several buckets; still read.
const FORMAT_V2: u8 = 2;

/// The format before the kept days were recorded; still read, as having kept 90 days.
const FORMAT_V1: u8 = 1;

/// Bytes before the packed days: format, kept days, 7 instants, purchases, spend, flags, stage,
/// last scored day, caps, first packed day, the latest day's bucket, the packed length.
const FIXED: usize = 1 + 2 + 7 * 4 + 4 + 8 + 1 + 1 + 2 + 8 + 2 + 16 + 4;

/// A decoded state and how much history its writer kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub state: UserState,
    /// Days of buckets the writer kept: the reader's windows are exact on this state only if
    /// they keep no more (see the module docs).
    pub kept_days: u32,
}

/// Why bytes are not a user state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("state record of {0} bytes is truncated")]
    Truncated(usize),
    #[error("state record format {0} is not known to this build (it writes format {FORMAT})")]
    UnknownFormat(u8),
    #[error("state record is corrupt: {0}")]
    Corrupt(String),
}

/// Appends the encoding of `state`, whose buckets are pruned to `kept_days` days, to `out`.
pub fn encode(state: &UserState, kept_days: u32, out: &mut Vec<u8>) {
    let (hot, packed, first_day) = state.windows.to_parts();
    out.reserve(FIXED + packed.len());
    out.push(FORMAT);
    out.extend_from_slice(&u16::try_from(kept_days).unwrap_or(u16::MAX).to_le_bytes());
    for t in [
        state.first_seen,
        state.last_activity,
        state.first_purchase,
        state.last_purchase,
        state.last_engaged,
        state.returned_at,
        state.alerted_episode,
    ] {
        out.extend_from_slice(&t.secs().to_le_bytes());
    }
    out.extend_from_slice(&state.purchases_total.to_le_bytes());
    out.extend_from_slice(&state.spend_total_cents.to_le_bytes());
    out.push(u8::from(state.opted_out));
    out.push(state.stage as u8);
    out.extend_from_slice(&state.last_scored_day.to_le_bytes());
    out.extend_from_slice(&state.caps.to_bytes());
    out.extend_from_slice(&first_day.to_le_bytes());
    out.extend_from_slice(&hot.day.to_le_bytes());
    out.extend_from_slice(&hot.events.to_le_bytes());
    out.extend_from_slice(&hot.spend_cents.to_le_bytes());
    out.extend_from_slice(&[
        hot.page_views,
        hot.logins,
        hot.cart_adds,
        hot.purchases,
        hot.refunds,
        hot.complaints,
        hot.coupons,
        hot.social,
    ]);
    out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
    out.extend_from_slice(packed);
}

/// Reads fixed-size fields off the front of a record.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let end = self.pos + N;
        let chunk = self
            .bytes
            .get(self.pos..end)
            .ok_or(CodecError::Truncated(self.bytes.len()))?;
        self.pos = end;
        let mut out = [0u8; N];
        out.copy_from_slice(chunk);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

/// Decodes one record written by [`encode`] (or by a build writing format 1 or 2).
pub fn decode(bytes: &[u8]) -> Result<Decoded, CodecError> {
    let mut r = Reader { bytes, pos: 0 };
    let kept_days = match r.u8()? {
        FORMAT_V1 => MIN_KEPT_DAYS,
        FORMAT_V2 | FORMAT => {
            let kept = u32::from(r.u16()?);
            if !(MIN_KEPT_DAYS..=u32::from(MAX_HORIZON_DAYS)).contains(&kept) {
                return Err(CodecError::Corrupt(format!("kept days {kept}")));
            }
            kept
        }
        format => return Err(CodecError::UnknownFormat(format)),
    };
    let mut instants = [Instant32::NEVER; 7];
    for t in &mut instants {
        *t = Instant32::from_secs(r.u32()?);
    }
    let purchases_total = r.u32()?;
    let spend_total_cents = r.u64()?;
    let opted_out = match r.u8()? {
        0 => false,
        1 => true,
        f => return Err(CodecError::Corrupt(format!("opt-out flag {f}"))),
    };
    let stage = r.u8()?;
    if usize::from(stage) >= super::Stage::ALL.len() {
        return Err(CodecError::Corrupt(format!("lifecycle stage {stage}")));
    }
    let stage = super::Stage::from_u8(stage);
    let last_scored_day = r.u16()?;
    let caps = CapState::from_bytes(r.take()?);
    let first_day = r.u16()?;
    let mut hot = DayBucket {
        day: r.u16()?,
        events: r.u16()?,
        spend_cents: r.u32()?,
        ..DayBucket::default()
    };
    let [page_views, logins, cart_adds, purchases, refunds, complaints, coupons, social] =
        r.take::<8>()?;
    hot.page_views = page_views;
    hot.logins = logins;
    hot.cart_adds = cart_adds;
    hot.purchases = purchases;
    hot.refunds = refunds;
    hot.complaints = complaints;
    hot.coupons = coupons;
    hot.social = social;
    let len = r.u32()? as usize;
    let packed = bytes
        .get(r.pos..r.pos + len)
        .ok_or(CodecError::Truncated(bytes.len()))?;
    if r.pos + len != bytes.len() {
        return Err(CodecError::Corrupt(format!(
            "{} trailing bytes",
            bytes.len() - r.pos - len
        )));
    }
    let windows = DayWindows::from_parts(hot, packed, first_day).map_err(CodecError::Corrupt)?;
    let [first_seen, last_activity, first_purchase, last_purchase, last_engaged, returned_at, alerted_episode] =
        instants;
    let state = UserState {
        windows,
        first_seen,
        last_activity,
        first_purchase,
        last_purchase,
        last_engaged,
        returned_at,
        alerted_episode,
        purchases_total,
        spend_total_cents,
        opted_out,
        stage,
        last_scored_day,
        caps,
        // Not recorded: a restored user's next scoring rewrites their table row.
        table_mark: 0,
    };
    Ok(Decoded { state, kept_days })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};
    use crate::features::{FeatureLayout, Windows};
    use crate::DAY_MS;
    use proptest::prelude::*;

    fn state_from(history: &[(u32, usize, u32)]) -> UserState {
        let mut s = UserState::default();
        for (day, kind, cents) in history {
            s.apply(&Event {
                event_id: String::new(),
                user_id: "u".into(),
                kind: EventKind::ALL[*kind],
                ts: i64::from(*day) * DAY_MS + 3_600_000,
                amount: f64::from(*cents) / 100.0,
            });
        }
        s
    }

    proptest! {
        /// Any reachable state survives the round trip exactly, features included.
        #[test]
        fn round_trip(history in proptest::collection::vec((0u32..200, 0usize..15, 0u32..50_000), 0..80),
                      stage in 0u8..6, scored in 0u16..400, alerts in proptest::collection::vec(1u16..400, 0..4)) {
            let mut s = state_from(&history);
            s.stage = crate::features::Stage::from_u8(stage);
            s.last_scored_day = scored;
            for d in alerts { s.caps.record(d); }
            let mut bytes = Vec::new();
            encode(&s, MIN_KEPT_DAYS, &mut bytes);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(back.kept_days, MIN_KEPT_DAYS);
            let back = back.state;
            prop_assert_eq!(&back, &s);
            let at = 210 * DAY_MS;
            let layout = FeatureLayout::default_layout();
            prop_assert_eq!(back.features(at, layout), s.features(at, layout));
        }

        /// States kept under any window set survive the round trip with their kept days, and
        /// give the same features of that window set.
        #[test]
        fn round_trip_under_other_windows(history in proptest::collection::vec((0u32..400, 0usize..15, 0u32..50_000), 0..80),
                                          mut days in proptest::collection::btree_set(1u16..=365, 1..=4),
                                          at_day in 300u32..420) {
            let windows = Windows::new(&days.iter().map(|d| u64::from(*d)).collect::<Vec<_>>()).unwrap();
            days.clear();
            let mut s = state_from(&history);
            let at = i64::from(at_day) * DAY_MS;
            s.prune(at, windows.kept_days());
            let mut bytes = Vec::new();
            encode(&s, windows.kept_days(), &mut bytes);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(back.kept_days, windows.kept_days());
            prop_assert_eq!(&back.state, &s);
            let layout = FeatureLayout::of(windows);
            prop_assert_eq!(back.state.features(at, layout), s.features(at, layout));
        }

        /// Truncated or damaged records are errors, never panics.
        #[test]
        fn damage_is_an_error(history in proptest::collection::vec((0u32..200, 0usize..15, 0u32..50_000), 1..40),
                              cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
            let mut bytes = Vec::new();
            encode(&state_from(&history), MIN_KEPT_DAYS, &mut bytes);
            let cut = cut % bytes.len();
            prop_assert!(decode(&bytes[..cut]).is_err());
            let mut damaged = bytes.clone();
            let i = flip % damaged.len();
            damaged[i] ^= 1 << bit;
            let _ = decode(&damaged); // may or may not be valid; must not panic
        }
    }

    #[test]
    fn unknown_formats_are_named() {
        let mut bytes = Vec::new();
        encode(&UserState::default(), MIN_KEPT_DAYS, &mut bytes);
        bytes[0] = 9;
        assert_eq!(decode(&bytes), Err(CodecError::UnknownFormat(9)));
    }

    #[test]
    fn format_1_records_read_as_keeping_90_days() {
        let s = state_from(&[(10, 0, 0), (40, 6, 1234), (41, 1, 0)]);
        let mut v2 = Vec::new();
        encode(&s, 180, &mut v2);
        // Format 1 is format 2 without the kept days.
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&v2[3..]);
        let back = decode(&v1).unwrap();
        assert_eq!((back.state, back.kept_days), (s, MIN_KEPT_DAYS));
        assert_eq!(decode(&v2).unwrap().kept_days, 180);
    }

    #[test]
    fn the_stage_is_one_byte_in_lifecycle_order() {
        // Byte 44: format, kept days, 7 instants, purchases, spend, opt-out flag, then the stage.
        for (i, stage) in crate::features::Stage::ALL.into_iter().enumerate() {
            let s = UserState {
                stage,
                ..UserState::default()
            };
            let mut bytes = Vec::new();
            encode(&s, MIN_KEPT_DAYS, &mut bytes);
            assert_eq!(usize::from(bytes[44]), i);
            assert_eq!(decode(&bytes).unwrap().state.stage, stage);
            bytes[44] = 6;
            assert_eq!(
                decode(&bytes),
                Err(CodecError::Corrupt("lifecycle stage 6".into()))
            );
        }
    }

    #[test]
    fn format_2_records_still_read() {
        let s = state_from(&[(10, 0, 0), (40, 6, 1234), (41, 1, 0)]);
        let mut bytes = Vec::new();
        encode(&s, 180, &mut bytes);
        bytes[0] = 2;
        let back = decode(&bytes).unwrap();
        assert_eq!((back.state, back.kept_days), (s, 180));
    }

    /// A day heavier than one bucket survives the round trip exactly.
    #[test]
    fn heavy_days_round_trip() {
        let s = state_from(&[(10, 6, 4_000_000_000), (10, 6, 4_000_000_000), (11, 0, 0)]);
        assert_eq!(s.windows.len(), 2);
        let mut bytes = Vec::new();
        encode(&s, MIN_KEPT_DAYS, &mut bytes);
        assert_eq!(bytes[0], FORMAT);
        let back = decode(&bytes).unwrap().state;
        assert_eq!(back, s);
        assert_eq!(back.windows.totals(11, 7).spend_cents, 2 * 4_000_000_000);
    }

    #[test]
    fn impossible_kept_days_are_corrupt() {
        let mut bytes = Vec::new();
        encode(&UserState::default(), 89, &mut bytes);
        assert!(matches!(decode(&bytes), Err(CodecError::Corrupt(_))));
    }
}
