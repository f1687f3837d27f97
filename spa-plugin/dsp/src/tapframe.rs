//! The tap socket's frame format. Every frame is self-delimiting: a fixed header, then
//! `frames * channels` interleaved f32 little-endian samples.
//!
//! ```text
//! 0  [u8;4] magic "MUGT"   4  u16 version (1)   6  u16 header length (48)
//! 8  u32 channels          12 u32 rate
//! 16 u64 graph clock position of the first frame (samples)   24 u64 graph clock nsec
//! 32 u32 frames in this packet                               36 u32 reserved (0)
//! 40 u64 frames this reader has lost so far (ring overflow in the graph + its own slowness)
//! 48 f32 LE samples, interleaved: frame 0 ch 1..N, frame 1 ch 1..N, ...
//! ```

pub const TAP_MAGIC: [u8; 4] = *b"MUGT";
pub const TAP_VERSION: u16 = 1;
pub const TAP_HEADER_LEN: usize = 48;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapHeader {
    pub channels: u32,
    pub rate: u32,
    pub position: u64,
    pub nsec: u64,
    pub frames: u32,
    pub lost: u64,
}

impl TapHeader {
    pub fn payload_len(&self) -> usize {
        self.frames as usize * self.channels as usize * 4
    }

    pub fn encode(&self) -> [u8; TAP_HEADER_LEN] {
        let mut h = [0u8; TAP_HEADER_LEN];
        h[0..4].copy_from_slice(&TAP_MAGIC);
        h[4..6].copy_from_slice(&TAP_VERSION.to_le_bytes());
        h[6..8].copy_from_slice(&(TAP_HEADER_LEN as u16).to_le_bytes());
        h[8..12].copy_from_slice(&self.channels.to_le_bytes());
        h[12..16].copy_from_slice(&self.rate.to_le_bytes());
        h[16..24].copy_from_slice(&self.position.to_le_bytes());
        h[24..32].copy_from_slice(&self.nsec.to_le_bytes());
        h[32..36].copy_from_slice(&self.frames.to_le_bytes());
        h[40..48].copy_from_slice(&self.lost.to_le_bytes());
        h
    }

    /// Parses a header; `None` for a wrong magic, version or a short buffer.
    pub fn decode(buf: &[u8]) -> Option<TapHeader> {
        let b = buf.get(..TAP_HEADER_LEN)?;
        if b[0..4] != TAP_MAGIC || b[4..6] != TAP_VERSION.to_le_bytes() {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        Some(TapHeader {
            channels: u32_at(8),
            rate: u32_at(12),
            position: u64_at(16),
            nsec: u64_at(24),
            frames: u32_at(32),
            lost: u64_at(40),
        })
    }
}

/// Appends one whole frame (header + samples) to `out` (non-RT side).
pub fn encode_frame(h: &TapHeader, interleaved: &[f32], out: &mut Vec<u8>) {
    out.extend_from_slice(&h.encode());
    for s in interleaved
        .iter()
        .take(h.frames as usize * h.channels as usize)
    {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// Splits one frame off the front of `buf`: header, samples and the bytes used.
pub fn decode_frame(buf: &[u8]) -> Option<(TapHeader, Vec<f32>, usize)> {
    let h = TapHeader::decode(buf)?;
    let end = TAP_HEADER_LEN + h.payload_len();
    let payload = buf.get(TAP_HEADER_LEN..end)?;
    let samples = payload
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((h, samples, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_is_byte_exact() {
        let h = TapHeader {
            channels: 2,
            rate: 48000,
            position: 0x0102_0304_0506_0708,
            nsec: 42,
            frames: 2,
            lost: 7,
        };
        let mut out = Vec::new();
        encode_frame(&h, &[1.0, -1.0, 0.5, 0.25], &mut out);
        assert_eq!(out.len(), 48 + 16);
        assert_eq!(&out[0..8], b"MUGT\x01\x00\x30\x00");
        assert_eq!(&out[8..16], &[2, 0, 0, 0, 0x80, 0xbb, 0, 0]);
        assert_eq!(&out[16..24], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&out[32..36], &[2, 0, 0, 0]);
        assert_eq!(&out[40..48], &[7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[48..52], &1.0f32.to_le_bytes());
        assert_eq!(&out[52..56], &(-1.0f32).to_le_bytes());
        let (d, s, used) = decode_frame(&out).unwrap();
        assert_eq!(
            (d, s.as_slice(), used),
            (h, &[1.0, -1.0, 0.5, 0.25][..], 64)
        );
    }

    #[test]
    fn malformed_input_is_rejected() {
        assert!(TapHeader::decode(&[0u8; 10]).is_none());
        let mut h = TapHeader {
            channels: 1,
            frames: 4,
            ..Default::default()
        }
        .encode()
        .to_vec();
        assert!(decode_frame(&h).is_none(), "payload missing");
        h[0] = b'X';
        assert!(TapHeader::decode(&h).is_none());
    }
}
