//! Fuzzing entry points (not part of the API): the server side of [`crate::net::transport::accept`]
//! driven over an in-memory duplex stream by a scripted client whose frames the fuzzer chooses.
//!
//! The script is the fuzzer's input, read front to back; missing bytes read as zero. For
//! [`handshake`] its first byte is a set of flags:
//!
//! | bit    | when set                                                                  |
//! |--------|---------------------------------------------------------------------------|
//! | `0x01` | the client pairs with an invite (else: a session)                         |
//! | `0x02` | the hello is raw script bytes                                             |
//! | `0x04` | the hello is sent in a text frame                                         |
//! | `0x08` | the client uses a wrong pre-shared key                                    |
//! | `0x10` | handshake message 1 is raw script bytes                                   |
//! | `0x20` | handshake message 3 is raw script bytes                                   |
//! | `0x40` | the hello carries script-chosen versions and invite id                    |
//! | `0x80` | the server's verifier refuses the client's key                            |
//!
//! Raw items are a little-endian `u16` length and that many bytes. After an accepted
//! handshake the rest of the script is a list of operations on the encrypted channel (see
//! `Op`); [`channel`] skips the flags byte and always runs an honest handshake first.
//!
//! Checked properties: an honest handshake is accepted; the server never accepts a client
//! that did not run a real handshake; the server receives exactly the complete messages sent
//! before the first fatal operation, in order; a clean close between messages ends the
//! channel with `Ok(None)` and any fatal operation ends it with an error.

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::net::keys::Keypair;
use crate::net::transport::{
    accept, noise_protocol_name, Limits, TransportError, MAX_CHUNK, NOISE_MAX_MESSAGE,
    PAIRING_NOISE_PARAMS, SESSION_NOISE_PARAMS,
};

/// The invite id the server knows.
const INVITE_ID: &str = "abcd2345";
/// The invite's pre-shared key.
const PSK: [u8; 32] = [0x5a; 32];
/// The server's message limit in these runs (small, so the fuzzer can reach it).
const MAX_MESSAGE: usize = 4096;

/// Runs one scripted connection: flags byte, then the handshake items and channel operations.
pub fn handshake(data: &[u8]) {
    let mut script = Script(data);
    let flags = script.byte();
    run(flags, script);
}

/// Runs one honest handshake, then the script's channel operations (chunk reassembly).
pub fn channel(data: &[u8]) {
    run(0, Script(data));
}

/// Reads the script.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> usize {
        usize::from(u16::from_le_bytes([self.byte(), self.byte()]))
    }

    /// A length-prefixed item (shorter if the script ends first).
    fn item(&mut self) -> &'a [u8] {
        let n = self.u16().min(self.0.len());
        let (item, rest) = self.0.split_at(n);
        self.0 = rest;
        item
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn keys() -> Option<&'static (Keypair, Keypair)> {
    static KEYS: OnceLock<Option<(Keypair, Keypair)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let owner = Keypair::from_secret([0x11; 32]).ok()?;
        let client = Keypair::from_secret([0x22; 32]).ok()?;
        Some((owner, client))
    })
    .as_ref()
}

fn limits() -> Limits {
    Limits {
        max_message: MAX_MESSAGE,
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

fn run(flags: u8, script: Script<'_>) {
    let Some((owner, client)) = keys() else {
        return;
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let (server_end, client_end) = rt.block_on(async {
        let (a, b) = tokio::io::duplex(1 << 18);
        tokio::join!(
            serve(a, owner, flags & 0x80 != 0),
            drive(b, client, flags, script)
        )
    });
    let honest = flags & !0x01 == 0;
    if honest {
        assert!(server_end.accepted, "an honest handshake was refused");
        assert!(client_end.got_ok, "an honest client got no ok");
    }
    if server_end.accepted {
        assert!(
            client_end.real_m3 && flags & 0x80 == 0,
            "the server accepted a client that did not finish a real handshake"
        );
        assert_eq!(server_end.remote, client.public, "wrong authenticated key");
        assert_eq!(
            server_end.received, client_end.delivered,
            "the server did not receive exactly the complete messages sent"
        );
        if client_end.got_ok {
            match (client_end.dead, client_end.in_message, &server_end.end) {
                (false, false, Some(Ok(())))
                | (true, _, Some(Err(_)))
                | (false, true, Some(Err(_))) => {}
                // The client's writes may fail once the server is gone; then it is "dead" too.
                (d, m, e) => panic!("channel ended wrongly: dead={d} in_message={m} end={e:?}"),
            }
        }
    }
    if client_end.got_ok {
        assert!(
            server_end.accepted,
            "the client got an ok from a refusing server"
        );
    }
}

/// What the server saw.
#[derive(Debug, Default)]
struct ServerEnd {
    accepted: bool,
    remote: [u8; 32],
    received: Vec<Vec<u8>>,
    /// How the channel ended: `Ok(())` for a clean close, `Err(description)` for an error.
    end: Option<Result<(), String>>,
}

async fn serve(stream: DuplexStream, owner: &Keypair, reject: bool) -> ServerEnd {
    let limits = limits();
    let accepted = accept(
        stream,
        owner,
        |id: &str| (id == INVITE_ID).then_some(PSK),
        |id: &str| format!("no usable invite {id}"),
        |_: &crate::net::transport::Mode, _: &[u8; 32]| {
            if reject {
                Err(("unknown_key".to_owned(), "not paired".to_owned()))
            } else {
                Ok(())
            }
        },
        |_: &str| {},
        &limits,
    )
    .await;
    let mut end = ServerEnd::default();
    let Ok((mut ch, _mode)) = accepted else {
        return end;
    };
    end.accepted = true;
    end.remote = ch.remote_static();
    loop {
        match ch.recv().await {
            Ok(Some(m)) => {
                assert!(m.len() <= MAX_MESSAGE, "a message over the limit");
                end.received.push(m);
            }
            Ok(None) => {
                end.end = Some(Ok(()));
                break;
            }
            Err(e) => {
                assert!(
                    matches!(ch.recv().await, Err(TransportError::Closed)),
                    "the channel stayed usable after {e}"
                );
                end.end = Some(Err(e.to_string()));
                break;
            }
        }
    }
    ch.close().await;
    end
}

/// What the client did.
#[derive(Debug, Default)]
struct ClientEnd {
    real_m3: bool,
    got_ok: bool,
    /// Complete messages sent before the first fatal operation.
    delivered: Vec<Vec<u8>>,
    /// A message was started in chunks (possibly empty ones) and not finished.
    in_message: bool,
    /// A fatal operation was sent (or a write failed).
    dead: bool,
}

/// Channel operations, chosen by `byte % 8`.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// An encrypted chunk: a flag byte (any value) and a raw item.
    Chunk,
    /// A raw (unencrypted) binary frame.
    RawFrame,
    /// A text frame.
    Text,
    /// A ping with a short payload.
    Ping,
    /// An encrypted chunk with one byte flipped at a chosen position.
    Tampered,
    /// An encrypted empty plaintext.
    Empty,
    /// A whole message of a chosen length, in chunks of a chosen size.
    Message,
    /// Stop and close.
    Close,
}

impl Op {
    fn from_byte(b: u8) -> Op {
        match b % 8 {
            0 => Op::Chunk,
            1 => Op::RawFrame,
            2 => Op::Text,
            3 => Op::Ping,
            4 => Op::Tampered,
            5 => Op::Empty,
            6 => Op::Message,
            _ => Op::Close,
        }
    }
}

type Ws = WebSocketStream<DuplexStream>;

/// The next binary or text frame (skipping pings and pongs), or `None`.
async fn next_frame(ws: &mut Ws) -> Option<Message> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(m)) => return Some(m),
        }
    }
}

async fn binary_reply(ws: &mut Ws) -> Option<Vec<u8>> {
    match next_frame(ws).await {
        Some(Message::Binary(b)) => Some(b),
        _ => None,
    }
}

async fn drive(stream: DuplexStream, me: &Keypair, flags: u8, mut script: Script<'_>) -> ClientEnd {
    let mut end = ClientEnd::default();
    let Ok((mut ws, _)) = tokio_tungstenite::client_async("ws://owner.invalid/", stream).await
    else {
        return end;
    };
    handshake_and_ops(&mut ws, me, flags, &mut script, &mut end).await;
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
    end
}

async fn handshake_and_ops(
    ws: &mut Ws,
    me: &Keypair,
    flags: u8,
    script: &mut Script<'_>,
    end: &mut ClientEnd,
) {
    let pair = flags & 0x01 != 0;
    // 1. Hello.
    let hello: Vec<u8> = if flags & 0x02 != 0 {
        script.item().to_vec()
    } else if flags & 0x40 != 0 {
        let versions: Vec<u32> = script
            .item()
            .chunks(4)
            .map(|c| c.iter().fold(0u32, |v, &b| v << 8 | u32::from(b)))
            .collect();
        let invite = String::from_utf8_lossy(script.item()).into_owned();
        let hello = if pair {
            serde_json::json!({"duo": "hello", "versions": versions, "mode": "pair", "invite": invite})
        } else {
            serde_json::json!({"duo": "hello", "versions": versions, "mode": "session"})
        };
        hello.to_string().into_bytes()
    } else if pair {
        format!(r#"{{"duo":"hello","versions":[2,1],"mode":"pair","invite":"{INVITE_ID}"}}"#)
            .into_bytes()
    } else {
        br#"{"duo":"hello","versions":[2,1],"mode":"session"}"#.to_vec()
    };
    let frame = if flags & 0x04 != 0 {
        Message::Text(String::from_utf8_lossy(&hello).into_owned())
    } else {
        Message::Binary(hello.clone())
    };
    if ws.send(frame).await.is_err() {
        return;
    }
    let Some(welcome) = binary_reply(ws).await else {
        return;
    };

    // 2. Noise.
    let mut prologue = b"duo/1\n".to_vec();
    prologue.extend_from_slice(&hello);
    prologue.push(b'\n');
    prologue.extend_from_slice(&welcome);
    // The cipher of the version the node chose (the newest, if the welcome is not one).
    let chosen = serde_json::from_slice::<serde_json::Value>(&welcome)
        .ok()
        .and_then(|w| w.get("version").and_then(serde_json::Value::as_u64))
        .and_then(|v| u32::try_from(v).ok());
    let params = chosen
        .and_then(|v| noise_protocol_name(v, pair))
        .unwrap_or(if pair {
            PAIRING_NOISE_PARAMS
        } else {
            SESSION_NOISE_PARAMS
        });
    let Ok(params) = params.parse::<snow::params::NoiseParams>() else {
        return;
    };
    let psk = if flags & 0x08 != 0 { [0x77; 32] } else { PSK };
    let mut builder = snow::Builder::new(params)
        .local_private_key(me.secret())
        .prologue(&prologue);
    if pair {
        builder = builder.psk(3, &psk);
    }
    let Ok(mut hs) = builder.build_initiator() else {
        return;
    };
    let mut buf = vec![0u8; NOISE_MAX_MESSAGE];

    let m1_real = flags & 0x10 == 0;
    let m1 = if m1_real {
        match hs.write_message(&[], &mut buf) {
            Ok(n) => buf.get(..n).unwrap_or_default().to_vec(),
            Err(_) => return,
        }
    } else {
        script.item().to_vec()
    };
    if ws.send(Message::Binary(m1)).await.is_err() {
        return;
    }
    let Some(m2) = binary_reply(ws).await else {
        return;
    };
    let m2_ok = m1_real && hs.read_message(&m2, &mut buf).is_ok();
    let m3_real = m2_ok && flags & 0x20 == 0;
    let m3 = if m3_real {
        match hs.write_message(&[], &mut buf) {
            Ok(n) => buf.get(..n).unwrap_or_default().to_vec(),
            Err(_) => return,
        }
    } else {
        script.item().to_vec()
    };
    end.real_m3 = m3_real;
    if ws.send(Message::Binary(m3)).await.is_err() {
        return;
    }
    let Some(ok) = binary_reply(ws).await else {
        return;
    };
    if !m3_real {
        return;
    }
    let Ok(mut noise) = hs.into_transport_mode() else {
        return;
    };
    if noise.read_message(&ok, &mut buf) != Ok(0) {
        return;
    }
    end.got_ok = true;

    // 3. Channel operations.
    let mut current: Vec<u8> = Vec::new();
    while !script.is_empty() && !end.dead {
        let op = Op::from_byte(script.byte());
        let mut fatal = false;
        let frames: Vec<Message> = match op {
            Op::Close => break,
            Op::Chunk | Op::Tampered => {
                let flag = script.byte();
                let data = script.item();
                let data = data.get(..MAX_CHUNK).unwrap_or(data);
                let mut plain = vec![flag];
                plain.extend_from_slice(data);
                let Ok(n) = noise.write_message(&plain, &mut buf) else {
                    return;
                };
                let mut frame = buf.get(..n).unwrap_or_default().to_vec();
                if let Op::Tampered = op {
                    let at = script.u16() % frame.len().max(1);
                    if let Some(b) = frame.get_mut(at) {
                        *b ^= 1 << (script.byte() % 8);
                    }
                    fatal = true;
                } else if flag > 1 || current.len() + data.len() > MAX_MESSAGE {
                    fatal = true;
                } else {
                    current.extend_from_slice(data);
                    end.in_message = flag == 1;
                    if flag == 0 {
                        end.delivered.push(std::mem::take(&mut current));
                    }
                }
                vec![Message::Binary(frame)]
            }
            Op::RawFrame => {
                fatal = true;
                vec![Message::Binary(script.item().to_vec())]
            }
            Op::Text => {
                fatal = true;
                vec![Message::Text(
                    String::from_utf8_lossy(script.item()).into_owned(),
                )]
            }
            Op::Ping => {
                let data = script.item();
                vec![Message::Ping(data.get(..125).unwrap_or(data).to_vec())]
            }
            Op::Empty => {
                fatal = true;
                let Ok(n) = noise.write_message(&[], &mut buf) else {
                    return;
                };
                vec![Message::Binary(buf.get(..n).unwrap_or_default().to_vec())]
            }
            Op::Message => {
                let len = script.u16();
                let size = (script.u16() % MAX_CHUNK).max(1);
                let seed = script.byte();
                let msg: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
                let mut frames = Vec::new();
                let mut chunks = msg.chunks(size).peekable();
                if chunks.peek().is_none() {
                    // An empty message is one final chunk.
                    let Ok(n) = noise.write_message(&[0], &mut buf) else {
                        return;
                    };
                    frames.push(Message::Binary(buf.get(..n).unwrap_or_default().to_vec()));
                }
                while let Some(chunk) = chunks.next() {
                    let mut plain = vec![u8::from(chunks.peek().is_some())];
                    plain.extend_from_slice(chunk);
                    let Ok(n) = noise.write_message(&plain, &mut buf) else {
                        return;
                    };
                    frames.push(Message::Binary(buf.get(..n).unwrap_or_default().to_vec()));
                }
                if current.len() + msg.len() > MAX_MESSAGE {
                    fatal = true;
                } else {
                    current.extend_from_slice(&msg);
                    end.in_message = false;
                    end.delivered.push(std::mem::take(&mut current));
                }
                frames
            }
        };
        for frame in frames {
            if ws.feed(frame).await.is_err() {
                end.dead = true;
                return;
            }
        }
        if ws.flush().await.is_err() {
            end.dead = true;
            return;
        }
        end.dead = fatal;
    }
}
