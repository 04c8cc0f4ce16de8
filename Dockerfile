# scnf mixer node: multi-stage build, small runtime image.
#   docker build -t scnf .
#   docker run --rm --network host scnf node --bind 0.0.0.0 --advertise <host-ip>
# Host networking (or a published UDP range matching --rtp-ports) is needed: peers
# send RTP straight to the node's ports.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY mixer-tests ./mixer-tests
COPY vectors ./vectors
COPY docs ./docs
COPY deploy ./deploy
RUN cargo build --release --locked --bin scnf

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 scnf
COPY --from=build /src/target/release/scnf /usr/local/bin/scnf
COPY deploy/scnf.toml /etc/scnf/scnf.toml
USER scnf
EXPOSE 20000-29999/udp
EXPOSE 7880/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/scnf"]
CMD ["node", "--config", "/etc/scnf/scnf.toml"]
