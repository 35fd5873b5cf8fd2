# One image with every pixl binary; each compose service picks its command.
# Build from the repository root: docker build -f docker/pixl.Dockerfile .

FROM rust:1.95-bookworm AS build
# The commit the release reports name (the build context has no .git).
ARG PIXL_GIT_HASH=unknown
ENV PIXL_GIT_HASH=${PIXL_GIT_HASH}
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && mkdir -p /out \
    && find target/release -maxdepth 1 -type f -executable -name 'pixl*' -exec cp {} /out/ \;

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /pixl pixl \
    && mkdir -p /pixl/exports /pixl/raw-cache /pixl/anon-store /pixl/export-work /pixl/research-export \
    && chown pixl /pixl/exports /pixl/raw-cache /pixl/anon-store /pixl/export-work /pixl/research-export
COPY --from=build /out/ /usr/local/bin/
COPY projects /pixl/projects
USER pixl
WORKDIR /pixl
ENTRYPOINT []
