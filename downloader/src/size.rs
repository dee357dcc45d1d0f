//! Human byte sizes: `4M`, `512k`, `1.5GiB`, `1048576` in; `1.5 MiB` out.
//!
//! Suffixes are binary (K = 1024), as in aria2 and curl: a user typing `-k 1M` means 1 MiB.

/// Parses a size such as `1048576`, `64K`, `4M`, `1.5G`, `2MiB` or `10mb` (all binary units).
pub fn parse_size(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let explain = || {
        format!("invalid size {input:?}: expected a number with an optional unit K, M, G or T (for example 4M)")
    };
    if number.is_empty() || number.matches('.').count() > 1 {
        return Err(explain());
    }
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(explain()),
    };
    let value: f64 = number.parse().map_err(|_| explain())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {input:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Formats a byte count with a binary unit and one decimal: `1.5 MiB`, `512 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_are_bytes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size(" 17b "), Ok(17));
    }

    #[test]
    fn units_are_binary_and_case_insensitive() {
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
    }

    #[test]
    fn nonsense_is_explained() {
        for bad in ["", "M", "1.2.3M", "4X", "-1", "1 0", "1e3"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("expected a number"), "{bad:?}: {err}");
        }
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn formats_with_binary_units() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(256 << 20), "256.0 MiB");
        assert_eq!(format_size(3 << 30), "3.0 GiB");
    }
}
