//! Level conversions. Silence is reported as a finite floor so wire formats never carry -inf.

/// The lowest level any reading reports, in dBFS.
pub const FLOOR_DB: f32 = -200.0;

/// Linear amplitude to dBFS, floored at [`FLOOR_DB`].
pub fn lin_to_db(x: f32) -> f32 {
    if x.is_nan() || x <= 1e-10 {
        FLOOR_DB
    } else {
        (20.0 * x.log10()).clamp(FLOOR_DB, 1000.0)
    }
}

/// dBFS to linear amplitude.
pub fn db_to_lin(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}
