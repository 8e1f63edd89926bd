//! Why the database cannot serve right now: what a client should retry later rather than a
//! bug, told apart from every other database error.

use sea_orm::{DbErr, RuntimeErr, sqlx};

/// The cause of a pool timeout, which hides why connecting failed.
pub(crate) const POOL_TIMED_OUT: &str =
    "no database connection became free within the pool's timeout";

/// Why the database cannot serve right now, when `err` says so: what a client should retry
/// later rather than a bug. `None` for every other error.
pub fn unavailable_cause(err: &DbErr) -> Option<Unavailable> {
    match err {
        DbErr::ConnectionAcquire(_) => Some(Unavailable::Unreachable(POOL_TIMED_OUT)),
        DbErr::Conn(RuntimeErr::SqlxError(e)) => Some(
            sqlx_cause(e).unwrap_or(Unavailable::Unreachable("cannot connect to the database")),
        ),
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_cause(e)
        }
        _ => None,
    }
}

/// Why the database cannot be used: it cannot be reached at all, or it answers but cannot store
/// anything (full, read-only, locked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// No connection: refused, lost, timed out, or the database is gone or shutting down.
    Unreachable(&'static str),
    /// Connected, but writes fail.
    Unwritable(&'static str),
}

impl Unavailable {
    /// What is wrong, for the log.
    pub fn cause(self) -> &'static str {
        match self {
            Self::Unreachable(cause) | Self::Unwritable(cause) => cause,
        }
    }
}

pub(crate) fn sqlx_cause(err: &sqlx::Error) -> Option<Unavailable> {
    use Unavailable::Unreachable;
    match err {
        sqlx::Error::Io(io) => Some(Unreachable(match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused",
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                "connection lost"
            }
            std::io::ErrorKind::TimedOut => "connection timed out",
            std::io::ErrorKind::UnexpectedEof => "connection closed by the database",
            _ => "network error",
        })),
        sqlx::Error::Tls(_) => Some(Unreachable("TLS failure")),
        sqlx::Error::PoolTimedOut => Some(Unreachable(POOL_TIMED_OUT)),
        sqlx::Error::PoolClosed => Some(Unreachable("connection pool closed")),
        sqlx::Error::WorkerCrashed => Some(Unreachable("the SQLite worker thread stopped")),
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_cause(code.parse().ok()?)
            } else {
                postgres_cause(&code)
            }
        }
        _ => None,
    }
}

/// SQLite result codes (the primary code is the low byte of the extended one).
pub(crate) fn sqlite_cause(extended: i32) -> Option<Unavailable> {
    use Unavailable::{Unreachable, Unwritable};
    match extended & 0xff {
        5 => Some(Unwritable("database busy: another writer holds the lock")),
        6 => Some(Unwritable("database table locked")),
        8 => Some(Unwritable("database is read-only")),
        10 => Some(Unwritable("disk I/O error")),
        13 => Some(Unwritable("disk full")),
        14 => Some(Unreachable("cannot open the database file")),
        _ => None,
    }
}

/// PostgreSQL SQLSTATEs.
fn postgres_cause(sqlstate: &str) -> Option<Unavailable> {
    use Unavailable::{Unreachable, Unwritable};
    match sqlstate {
        "25006" => Some(Unwritable("database is read-only")),
        "53100" => Some(Unwritable("disk full")),
        "53200" => Some(Unwritable("database out of memory")),
        "53300" => Some(Unreachable("too many connections")),
        "57P01" | "57P02" => Some(Unreachable("the database server shut the connection down")),
        "57P03" => Some(Unreachable(
            "the database server is starting or shutting down",
        )),
        "3D000" => Some(Unreachable("the database does not exist")),
        _ if sqlstate.starts_with("08") => Some(Unreachable("connection failure")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbErr, RuntimeErr, sqlx};

    use super::{Unavailable, unavailable_cause};

    fn sqlx_err(err: sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(err)))
    }

    #[test]
    fn storage_and_connection_failures_are_named_and_nothing_else_is() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            unavailable_cause(&sqlx_err(sqlx::Error::Io(refused))),
            Some(Unavailable::Unreachable("connection refused"))
        );
        assert!(matches!(
            unavailable_cause(&sqlx_err(sqlx::Error::PoolTimedOut)),
            Some(Unavailable::Unreachable(_))
        ));
        assert_eq!(
            super::sqlite_cause(13),
            Some(Unavailable::Unwritable("disk full"))
        );
        // SQLITE_IOERR_WRITE is an extended code of SQLITE_IOERR.
        assert_eq!(
            super::sqlite_cause(778),
            Some(Unavailable::Unwritable("disk I/O error"))
        );
        assert_eq!(
            super::sqlite_cause(19),
            None,
            "a constraint is not an outage"
        );
        assert_eq!(
            super::postgres_cause("25006"),
            Some(Unavailable::Unwritable("database is read-only"))
        );
        assert!(matches!(
            super::postgres_cause("08006"),
            Some(Unavailable::Unreachable(_))
        ));
        assert_eq!(super::postgres_cause("23505"), None);
        assert_eq!(unavailable_cause(&DbErr::RecordNotFound("x".into())), None);
    }
}
