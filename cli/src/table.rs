//! Tables as kubectl prints them: upper-case headers, columns two spaces apart, no borders.

/// Renders `rows` under `headers`; every row has as many cells as there are headers. The last
/// column is not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(width - cell.chars().count()));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_end_without_spaces() {
        let rows = vec![
            vec!["web".to_string(), "192.0.2.9".to_string(), "".to_string()],
            vec!["dns-udp".to_string(), "-".to_string(), "why".to_string()],
        ];
        assert_eq!(
            render(&["NAME", "ADDRESS", "NOTE"], &rows),
            "NAME     ADDRESS    NOTE\nweb      192.0.2.9\ndns-udp  -          why\n"
        );
    }
}
