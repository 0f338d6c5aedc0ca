//! A user's state as bytes: the payload of a changelog record or a local snapshot, so that state
//! can follow its partition to another instance (durable state, issue 6).
//!
//! Little-endian, versioned by its first byte, and as compact as the in-memory layout: the packed
//! day records are copied as they are. Decoding validates everything, because a changelog is
//! input like any other: a corrupt record is an error, never a panic or a silently wrong user.

use super::state::Instant32;
use super::window::{DayBucket, DayWindows};
use super::UserState;
use crate::policy::CapState;

/// Layout version written as the first byte.
pub const FORMAT: u8 = 1;

/// Bytes before the packed days: format, 7 instants, purchases, spend, flags, stage, last scored
/// day, caps, first packed day, the latest day's bucket, the packed length.
const FIXED: usize = 1 + 7 * 4 + 4 + 8 + 1 + 1 + 2 + 8 + 2 + 16 + 4;

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

/// Appends the encoding of `state` to `out`.
pub fn encode(state: &UserState, out: &mut Vec<u8>) {
    let (hot, packed, first_day) = state.windows.to_parts();
    out.reserve(FIXED + packed.len());
    out.push(FORMAT);
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
    out.push(state.stage);
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

/// Decodes one record written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<UserState, CodecError> {
    let mut r = Reader { bytes, pos: 0 };
    let format = r.u8()?;
    if format != FORMAT {
        return Err(CodecError::UnknownFormat(format));
    }
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
    Ok(UserState {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};
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
            s.stage = stage;
            s.last_scored_day = scored;
            for d in alerts { s.caps.record(d); }
            let mut bytes = Vec::new();
            encode(&s, &mut bytes);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(&back, &s);
            let at = 210 * DAY_MS;
            prop_assert_eq!(back.features(at), s.features(at));
        }

        /// Truncated or damaged records are errors, never panics.
        #[test]
        fn damage_is_an_error(history in proptest::collection::vec((0u32..200, 0usize..15, 0u32..50_000), 1..40),
                              cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
            let mut bytes = Vec::new();
            encode(&state_from(&history), &mut bytes);
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
        encode(&UserState::default(), &mut bytes);
        bytes[0] = 9;
        assert_eq!(decode(&bytes), Err(CodecError::UnknownFormat(9)));
    }
}
