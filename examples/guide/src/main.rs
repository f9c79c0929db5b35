//! Runs the chat server: data in `./data`, the native protocol (JSON lines)
//! on 127.0.0.1:7000, HTTP and WebSocket on 127.0.0.1:8080.
#![expect(clippy::print_stdout, reason = "a guide has no logger")]

use homer::json_lines;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = nopi::open("sled:./data").await?;
    let homer = guide::chat_server(&store).await?;
    let tcp = homer.listen_tcp("127.0.0.1:7000", json_lines()).await?;
    let http = homer.listen_http("127.0.0.1:8080").await?;
    println!("chat server on tcp {tcp} and http://{http}; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    homer.shutdown(std::time::Duration::from_secs(5)).await;
    store.flush().await?;
    Ok(())
}
