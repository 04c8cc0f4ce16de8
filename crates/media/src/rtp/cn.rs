//! Comfort noise (RFC 3389, static payload type 13 at 8 kHz): the noise level,
//! and the optional spectral reflection coefficients left as bytes.
//!
//! A leg that receives CN treats the gap as silence (or noise at this level); all
//! it needs from the payload is the level, so that is all this parses.

/// Static RTP payload type of comfort noise (RFC 3551).
pub const PT_CN: u8 = 13;

/// Why a CN payload was rejected.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum CnError {
    #[error("comfort-noise payload is empty")]
    Empty,
}

/// A comfort-noise payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComfortNoise<'a> {
    /// Noise level in -dBov, 0..=127 (0 is full scale, 127 is silence).
    pub level_neg_dbov: u8,
    /// Reflection coefficients (model order = length), unparsed.
    pub coefficients: &'a [u8],
}

impl<'a> ComfortNoise<'a> {
    /// Parses a CN payload. The level octet's most significant bit is unused by
    /// RFC 3389 and ignored here rather than rejected.
    pub fn parse(payload: &'a [u8]) -> Result<Self, CnError> {
        let (&level, coefficients) = payload.split_first().ok_or(CnError::Empty)?;
        Ok(ComfortNoise {
            level_neg_dbov: level & 0x7f,
            coefficients,
        })
    }

    /// The level as a linear fraction of full scale: 10^(-level/20).
    pub fn amplitude(&self) -> f32 {
        10f32.powf(-f32::from(self.level_neg_dbov) / 20.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_levels_parse_by_table() {
        type Row = (&'static [u8], Result<(u8, usize), CnError>);
        let table: &[Row] = &[
            (&[], Err(CnError::Empty)),
            (&[0], Ok((0, 0))),
            (&[40], Ok((40, 0))),
            (&[127], Ok((127, 0))),
            (&[0xc0], Ok((0x40, 0))),
            (&[60, 1, 2, 3], Ok((60, 3))),
        ];
        for (payload, want) in table {
            let got =
                ComfortNoise::parse(payload).map(|c| (c.level_neg_dbov, c.coefficients.len()));
            assert_eq!(&got, want, "{payload:?}");
        }
    }

    #[test]
    fn twenty_db_down_is_a_tenth_of_full_scale() {
        let cn = ComfortNoise::parse(&[20]).unwrap();
        assert!((cn.amplitude() - 0.1).abs() < 1e-6);
        assert_eq!(ComfortNoise::parse(&[0]).unwrap().amplitude(), 1.0);
    }
}
