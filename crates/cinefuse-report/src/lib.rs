//! Visual reports: the exploratory data analysis of a dataset (`cinefuse eda`) and the
//! training report of a run (`cinefuse report`). Charts are PNG files drawn with plotters,
//! gathered in a self-contained HTML page that opens from disk.

pub mod charts;
pub mod eda;
pub mod eda_extra;
pub mod font;
pub mod html;
pub mod run_report;
pub mod stats;

pub use eda::{EdaSummary, write_eda};
pub use run_report::{CurvePoint, RunReportData, write_run_report};
