# applyguard: the two commands a fresh machine needs are `make run` and `make test`.

CARGO ?= cargo
LISTEN ?= 127.0.0.1:8443

.PHONY: build run test certs fmt lint clean

build:
	$(CARGO) build --release --locked

# Dev certificates (rcgen, in certs-dev/) and HTTPS on 127.0.0.1:8443 with the example policy.
run:
	$(CARGO) run --release --locked -- serve --dev --listen $(LISTEN) --config examples/policy.yaml --inventory examples/inventory

# Formatting, lints and every test (unit and integration; real HTTPS, real TLS clients).
test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked --all-targets

certs:
	$(CARGO) run --release --locked -- certs --out certs-dev

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean
