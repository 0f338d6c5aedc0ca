//! Byte offsets in a configuration file to the line and column a person looks for: policy and
//! mapping files are refused with both.

/// 1-based line and column (in characters) of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_lines_and_characters_from_one() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(super::line_col(src, 0), (1, 1));
        assert_eq!(super::line_col(src, 6), (2, 1));
        assert_eq!(super::line_col(src, 9), (2, 3), "é is one character");
        assert_eq!(super::line_col(src, 8), (2, 2), "inside é: its start");
        assert_eq!(super::line_col(src, 999), (3, 1));
    }
}
