"""
punchd's benchmarks: C{python -m bench} runs them all and prints every
figure (see README.rst, "Performance").

  - L{bench.cost}: the real server's CPU per datagram against the floor of
    a bare Python responder (L{bench.floor}), driven by L{bench.loadgen};
  - L{bench.growth}: CPU per registration as the phonebook grows;
  - L{bench.memory}: resident memory per live registration;
  - L{bench.connect}: time to connect and punch cost, simulated and in
    the NAT lab.

C{python -m bench.profile} samples the server under load with py-spy.
"""
