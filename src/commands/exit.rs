//! The process exit status every command documents, in one place.

use std::process::ExitCode;

/// How a command ended, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything was done (every image certified, written; an audit found nothing).
    Success,
    /// 1: the command could not proceed (refused folders, unreadable files, bad models).
    Failure,
    /// 3: it ran, but some images failed certification or had errors, or an audit has findings.
    Incomplete,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Incomplete => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}
