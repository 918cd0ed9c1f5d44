# syntax=docker/dockerfile:1
# The childgraph gateway as a container image: built in a Rust image, run on distroless as a non-root user.
#   docker build -t childgraph:0.1.0 .
#   docker run --read-only -v /etc/childgraph:/etc/childgraph:ro -p 8080:8080 childgraph:0.1.0
# The Helm chart (helm/childgraph) runs it with UID 10001 on a read-only root filesystem.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# BuildKit cache mounts keep the registry and the build between builds; the binary is copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p childgraph \
    && install -D target/release/childgraph /out/childgraph \
    && install -D -m 0644 policies/policy.yaml /out/policy.yaml

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/childgraph /usr/local/bin/childgraph
# The built-in default policy is compiled in; this copy is for reference and for `policy explain --policy`.
COPY --from=build /out/policy.yaml /usr/share/childgraph/policy.yaml
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/childgraph"]
CMD ["serve", "--config", "/etc/childgraph/childgraph.yaml"]
