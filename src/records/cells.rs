//! CSV cells that a spreadsheet would run as formulas: a cell starting with `=`, `+`, `-`, `@`,
//! a tab or a carriage return is written with a single quote `'` in front (OWASP's CSV
//! injection advice). A cell that itself starts with `'` gets one more, so reading strips
//! exactly one leading `'` and gives every value back unchanged.

use std::borrow::Cow;

const TRIGGERS: [u8; 7] = [b'=', b'+', b'-', b'@', b'\t', b'\r', b'\''];

/// The cell as written to the file.
pub fn neutralise(cell: &[u8]) -> Cow<'_, [u8]> {
    match cell.first() {
        Some(first) if TRIGGERS.contains(first) => {
            let mut quoted = Vec::with_capacity(cell.len() + 1);
            quoted.push(b'\'');
            quoted.extend_from_slice(cell);
            Cow::Owned(quoted)
        }
        _ => Cow::Borrowed(cell),
    }
}

/// The value of a cell read from the file: [`neutralise`] undone.
pub fn restore(cell: &[u8]) -> &[u8] {
    cell.strip_prefix(b"'").unwrap_or(cell)
}

/// A read record with every cell restored.
pub fn restore_record(record: &csv::ByteRecord) -> csv::ByteRecord {
    record.iter().map(restore).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_never_starts_a_formula() {
        for value in [
            "=cmd|calc",
            "+1",
            "-2",
            "@sum",
            "\tx",
            "\rx",
            "'a",
            "''",
            "plain",
            "",
        ] {
            let written = neutralise(value.as_bytes());
            assert!(!written.starts_with(b"=") && !written.starts_with(b"@"));
            assert_eq!(restore(&written), value.as_bytes(), "{value}");
        }
    }
}
