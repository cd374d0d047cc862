//! QUIC application codes: why a node closed a connection ([`CloseCode`]), and why it stopped or
//! reset a stream ([`StreamCode`]). They travel in QUIC's own frames (`CONNECTION_CLOSE`,
//! `STOP_SENDING`, `RESET_STREAM`), not in bsfg frames, and like every wire value they never change
//! meaning; new codes get new numbers.

/// The application code of a connection a node closes (SPEC §9: peers get a close with an
/// application code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CloseCode {
    /// The node is shutting down, or a client is done.
    Shutdown = 0,
    /// A call on the connection got no answer within the link timeout.
    DeadLink = 1,
    /// Both sides dialled; the pair keeps the other connection.
    DuplicateConnection = 2,
    /// An operator closed the gate toward this peer.
    GateClosed = 3,
    /// This instance of an HA zone stopped being the active one: reconnect to the active one.
    Standby = 4,
    /// A `bsfg check --peers` handshake passed; the reason says what the node takes the caller
    /// for (`peer`, `client` or `unknown`).
    Checked = 5,
    /// The certificate the other side presented at the handshake is no longer trusted: a reload
    /// revoked it or removed its CA, or it expired since.
    Untrusted = 6,
}

impl CloseCode {
    pub const ALL: [CloseCode; 7] = [
        Self::Shutdown,
        Self::DeadLink,
        Self::DuplicateConnection,
        Self::GateClosed,
        Self::Standby,
        Self::Checked,
        Self::Untrusted,
    ];

    /// The number on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The code a closed connection carried, if it is one of ours.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| u64::from(c.code()) == code)
    }

    /// A stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::DeadLink => "dead_link",
            Self::DuplicateConnection => "duplicate_connection",
            Self::GateClosed => "gate_closed",
            Self::Standby => "standby",
            Self::Checked => "checked",
            Self::Untrusted => "untrusted",
        }
    }
}

/// The application code of a stream a node stops reading or resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum StreamCode {
    /// The request was read; nothing more is wanted on this stream.
    Done = 0,
    /// A raw body (after a `GetObject` response, or after a `PutObject` request) could not be
    /// sent whole: the reader must not take what arrived for the complete artifact.
    BodyFailed = 3,
    /// The reader took none of the answer for a long while (QUIC flow control held the writer):
    /// the writer gave it up rather than hold it for ever.
    Unread = 4,
}

impl StreamCode {
    /// The number on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_keep_their_numbers_and_read_back() {
        let numbers: Vec<u32> = CloseCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6], "wire values never change");
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code().into()), Some(code));
        }
        assert_eq!(CloseCode::from_code(99), None);
        assert_eq!(StreamCode::BodyFailed.code(), 3);
        assert_eq!(StreamCode::Unread.code(), 4);
    }
}
