//! Plain text tables for the command line (`pga-agent query`, `series`, `status`):
//! a header row, then one row a line; columns two spaces apart, each as wide as its
//! widest cell in terminal columns (comfy-table counts a wide character as two), no
//! borders, nothing after the last visible character of a line.

use comfy_table::{CellAlignment, ContentArrangement, Table, TableComponent, presets};

/// A column: its header, and whether its cells align to the right (numbers).
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    pub header: &'a str,
    pub right: bool,
}

impl<'a> Column<'a> {
    pub const fn left(header: &'a str) -> Self {
        Column {
            header,
            right: false,
        }
    }

    pub const fn right(header: &'a str) -> Self {
        Column {
            header,
            right: true,
        }
    }
}

/// The table of `rows` under `columns`, each line ending in `\n`.
pub fn text_table<R, C>(columns: &[Column<'_>], rows: R) -> String
where
    R: IntoIterator,
    R::Item: IntoIterator<Item = C>,
    C: Into<comfy_table::Cell>,
{
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(columns.iter().map(|c| c.header));
    for row in rows {
        table.add_row(row);
    }
    for component in [
        TableComponent::LeftBorder,
        TableComponent::RightBorder,
        TableComponent::HeaderLines,
        TableComponent::LeftHeaderIntersection,
        TableComponent::MiddleHeaderIntersections,
        TableComponent::RightHeaderIntersection,
    ] {
        table.remove_style(component);
    }
    // One space of padding after each cell and a one-space separator: two apart.
    table.set_style(TableComponent::VerticalLines, ' ');
    for (column, spec) in table.column_iter_mut().zip(columns) {
        column.set_padding((0, 1));
        if spec.right {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_the_widest_cell_in_terminal_columns() {
        let text = text_table(
            &[
                Column::left("name"),
                Column::right("n"),
                Column::left("note"),
            ],
            [
                ["postgres:main:sizes", "7", "-"],
                ["数据库", "1234", "a long note"],
            ],
        );
        assert_eq!(
            text,
            "name                    n  note\n\
             postgres:main:sizes     7  -\n\
             数据库               1234  a long note\n"
        );
    }
}
