//! Readings of a Redis server from its `INFO` command, over a plain TCP connection (one inline
//! command, one bulk reply): the benchmark uses them to give Redis's CPU time and memory per
//! notification.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one `INFO` may take.
const INFO_LIMIT: Duration = Duration::from_secs(5);

/// What the benchmark reads from Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisReading {
    /// `used_memory`: bytes Redis's allocator holds for data and overhead.
    pub used_memory: u64,
    /// `process_id`: for CPU time from `/proc` when Redis runs on this machine.
    pub process_id: u32,
}

/// Reads `used_memory` and `process_id` from the Redis at `address` (`host:port`, no password).
pub async fn read(address: &str) -> Result<RedisReading, String> {
    let text = tokio::time::timeout(INFO_LIMIT, info(address))
        .await
        .map_err(|_| format!("Redis at {address} did not answer INFO within {} s", INFO_LIMIT.as_secs()))??;
    parse(&text).ok_or_else(|| format!("Redis at {address} answered INFO without used_memory and process_id"))
}

async fn info(address: &str) -> Result<String, String> {
    let stream =
        TcpStream::connect(address).await.map_err(|error| format!("cannot connect to Redis at {address}: {error}"))?;
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(b"INFO server\r\nINFO memory\r\n")
        .await
        .map_err(|error| format!("cannot send INFO to Redis at {address}: {error}"))?;
    let mut text = String::new();
    for _ in 0..2 {
        let mut header = String::new();
        stream.read_line(&mut header).await.map_err(|error| format!("Redis at {address}: {error}"))?;
        let length: usize = header
            .strip_prefix('$')
            .and_then(|length| length.trim().parse().ok())
            .ok_or_else(|| format!("Redis at {address} answered INFO with {:?}", header.trim()))?;
        let mut body = vec![0; length + 2];
        stream.read_exact(&mut body).await.map_err(|error| format!("Redis at {address}: {error}"))?;
        text.push_str(&String::from_utf8_lossy(&body));
    }
    Ok(text)
}

fn parse(text: &str) -> Option<RedisReading> {
    let field = |name: &str| {
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(|value| value.trim().to_owned()))
    };
    Some(RedisReading {
        used_memory: field("used_memory")?.parse().ok()?,
        process_id: field("process_id")?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let text = "# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\n\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_rss:2000000\r\n";
        assert_eq!(parse(text), Some(RedisReading { used_memory: 1_048_576, process_id: 4242 }));
        assert_eq!(parse("# Memory\r\nused_memory_rss:1\r\n"), None);
    }
}
