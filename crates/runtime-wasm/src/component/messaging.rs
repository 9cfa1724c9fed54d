//! `wasi:messaging@0.2.0-draft` (`producer`, `request-reply`) onto [`nex_hostapi::messaging`]:
//! core NATS publish and request, performed by the node, outside the reserved subjects.
//!
//! - `client.connect("default")` is the node's connection (the only client); any other name is
//!   `error::connection`.
//! - `producer.send(client, topic, message)` = `messaging.publish` of the message's data on
//!   subject `topic` (content type and metadata are not sent: the host API publishes bytes).
//! - `request-reply.request(client, topic, message, options)` = `messaging.request` (one reply),
//!   or `messaging.requestMany` when the options expect more than one; the timeout is the
//!   options' or 5 s. Replies are messages whose `topic` is none.
//! - `request-reply.reply` is `error::other`: a handler's reply is its return value.
//!
//! A failed host call is `timeout` (`Timeout`), `connection(message)` (`Unavailable`),
//! `permission-denied(message)` (`Denied`), otherwise `other("<kind>: <message>")`
//! (`InvalidArgument: messaging.publish: subject `$SYS.x` is reserved ...`). A handle the table
//! does not hold is a host bug: a trap.

use nex_hostapi::{Call, ErrorKind, GuestError, Reply, messaging};
use wasmtime::component::Resource;

use super::ComponentState;
use super::bindings::wasi::messaging::{producer, request_reply, types};

/// The name `connect` takes for the node's connection.
pub const DEFAULT_CLIENT: &str = "default";

/// A `client` resource: the node's connection, the only one.
pub struct Client;

/// A `message` resource.
#[derive(Debug, Default, Clone)]
pub struct Message {
    data: Vec<u8>,
    topic: Option<String>,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
}

/// A `request-options` resource.
#[derive(Debug, Default)]
pub struct RequestOptions {
    timeout_ms: Option<u32>,
    expected_replies: Option<u32>,
}

impl From<GuestError> for types::Error {
    fn from(e: GuestError) -> Self {
        match e.kind {
            ErrorKind::Timeout => types::Error::Timeout,
            ErrorKind::Unavailable => types::Error::Connection(e.message),
            ErrorKind::Denied => types::Error::PermissionDenied(e.message),
            kind => types::Error::Other(format!("{kind}: {}", e.message)),
        }
    }
}

type Result<T> = wasmtime::Result<T>;
type Outcome<T> = wasmtime::Result<std::result::Result<T, types::Error>>;

impl ComponentState {
    fn message(&self, m: &Resource<Message>) -> Result<&Message> {
        Ok(self.table.get(m)?)
    }

    fn message_mut(&mut self, m: &Resource<Message>) -> Result<&mut Message> {
        Ok(self.table.get_mut(m)?)
    }
}

impl types::Host for ComponentState {}

impl types::HostClient for ComponentState {
    fn connect(&mut self, name: String) -> Outcome<Resource<Client>> {
        if name != DEFAULT_CLIENT {
            return Ok(Err(types::Error::Connection(format!(
                "no messaging client `{name}`: the one client is `{DEFAULT_CLIENT}`"
            ))));
        }
        Ok(Ok(self.table.push(Client)?))
    }

    fn disconnect(&mut self, _: Resource<Client>) -> Outcome<()> {
        Ok(Ok(()))
    }

    fn drop(&mut self, c: Resource<Client>) -> Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl types::HostMessage for ComponentState {
    fn new(&mut self, data: Vec<u8>) -> Result<Resource<Message>> {
        Ok(self.table.push(Message {
            data,
            ..Default::default()
        })?)
    }

    fn topic(&mut self, m: Resource<Message>) -> Result<Option<String>> {
        Ok(self.message(&m)?.topic.clone())
    }

    fn content_type(&mut self, m: Resource<Message>) -> Result<Option<String>> {
        Ok(self.message(&m)?.content_type.clone())
    }

    fn set_content_type(&mut self, m: Resource<Message>, content_type: String) -> Result<()> {
        self.message_mut(&m)?.content_type = Some(content_type);
        Ok(())
    }

    fn data(&mut self, m: Resource<Message>) -> Result<Vec<u8>> {
        Ok(self.message(&m)?.data.clone())
    }

    fn set_data(&mut self, m: Resource<Message>, data: Vec<u8>) -> Result<()> {
        self.message_mut(&m)?.data = data;
        Ok(())
    }

    fn metadata(&mut self, m: Resource<Message>) -> Result<Option<Vec<(String, String)>>> {
        let meta = &self.message(&m)?.metadata;
        Ok((!meta.is_empty()).then(|| meta.clone()))
    }

    fn add_metadata(&mut self, m: Resource<Message>, key: String, value: String) -> Result<()> {
        let meta = &mut self.message_mut(&m)?.metadata;
        meta.retain(|(k, _)| *k != key);
        meta.push((key, value));
        Ok(())
    }

    fn set_metadata(&mut self, m: Resource<Message>, meta: Vec<(String, String)>) -> Result<()> {
        self.message_mut(&m)?.metadata = meta;
        Ok(())
    }

    fn remove_metadata(&mut self, m: Resource<Message>, key: String) -> Result<()> {
        self.message_mut(&m)?.metadata.retain(|(k, _)| *k != key);
        Ok(())
    }

    fn drop(&mut self, m: Resource<Message>) -> Result<()> {
        self.table.delete(m)?;
        Ok(())
    }
}

impl producer::Host for ComponentState {
    fn send(&mut self, _: Resource<Client>, topic: String, m: Resource<Message>) -> Outcome<()> {
        let payload = self.table.delete(m)?.data;
        let call = Call::Messaging(messaging::Call::Publish {
            subject: topic,
            payload,
        });
        Ok(match self.host_call(call) {
            Ok(Reply::Done) => Ok(()),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e.into()),
        })
    }
}

/// A reply of the wrong variant: a bug of the node, seen by the guest as such.
fn unexpected(reply: Reply) -> types::Error {
    GuestError::internal(format!("host call: unexpected reply {reply:?}")).into()
}

impl request_reply::Host for ComponentState {
    fn request(
        &mut self,
        _: Resource<Client>,
        topic: String,
        m: Resource<Message>,
        options: Option<Resource<RequestOptions>>,
    ) -> Outcome<Vec<Resource<Message>>> {
        let payload = self.message(&m)?.data.clone();
        let options = match options {
            Some(o) => self.table.delete(o)?,
            None => RequestOptions::default(),
        };
        let timeout_ms = options.timeout_ms.map(u64::from);
        let call = match options.expected_replies {
            Some(max) if max > 1 => messaging::Call::RequestMany {
                subject: topic,
                payload,
                timeout_ms,
                max: Some(max),
            },
            _ => messaging::Call::Request {
                subject: topic,
                payload,
                timeout_ms,
            },
        };
        let replies = match self.host_call(Call::Messaging(call)) {
            Ok(Reply::Message(m)) => vec![m],
            Ok(Reply::Messages(ms)) => ms,
            Ok(other) => return Ok(Err(unexpected(other))),
            Err(e) => return Ok(Err(e.into())),
        };
        let mut out = Vec::with_capacity(replies.len());
        for data in replies {
            out.push(self.table.push(Message {
                data,
                ..Default::default()
            })?);
        }
        Ok(Ok(out))
    }

    fn reply(&mut self, _: Resource<Message>, m: Resource<Message>) -> Outcome<()> {
        self.table.delete(m)?;
        Ok(Err(types::Error::Other(
            "reply: nex delivers no messages to reply to; a handler's reply is its return value"
                .into(),
        )))
    }
}

impl request_reply::HostRequestOptions for ComponentState {
    fn new(&mut self) -> Result<Resource<RequestOptions>> {
        Ok(self.table.push(RequestOptions::default())?)
    }

    fn set_timeout_ms(&mut self, o: Resource<RequestOptions>, timeout_ms: u32) -> Result<()> {
        self.table.get_mut(&o)?.timeout_ms = Some(timeout_ms);
        Ok(())
    }

    fn set_expected_replies(&mut self, o: Resource<RequestOptions>, n: u32) -> Result<()> {
        self.table.get_mut(&o)?.expected_replies = Some(n);
        Ok(())
    }

    fn drop(&mut self, o: Resource<RequestOptions>) -> Result<()> {
        self.table.delete(o)?;
        Ok(())
    }
}
