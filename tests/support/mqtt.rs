//! Publishing test messages by hand, where the simulator's meters do not fit
//! (bad payloads, one-minute records, a flood of sensor ids).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Publish each `(topic, payload)` at QoS 1 from a fresh client and wait for
/// every PUBACK (60 s at most). The client reads and sends packets up to
/// 64 MiB, so a test can send what the broker's own limit allows.
pub async fn publish_all(broker: std::net::SocketAddr, messages: Vec<(String, Vec<u8>)>) {
    let mut options = MqttOptions::new(super::unique("test-publisher"), broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(10)).set_max_packet_size(64 << 20, 64 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, messages.len() + 10);
    let expected = messages.len();
    let acks = tokio::spawn(async move {
        let mut acks = 0;
        while acks < expected {
            if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.expect("the broker is reachable") {
                acks += 1;
            }
        }
    });
    for (topic, payload) in messages {
        client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), acks).await.expect("every message acknowledged").unwrap();
}
