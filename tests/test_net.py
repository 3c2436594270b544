"""NIC, learning switch, pcap and the built-in ping peer, in simulated time."""

from __future__ import annotations

import shutil
import subprocess
from decimal import Decimal

import pytest
import simpy
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import checksum as scapy_checksum
from scapy.utils import rdpcap

from sim.devices.net import NetError, Nic, Switch, parse_mac, serialisation_ns
from sim.devices.pcap import PcapWriter
from sim.devices.peers import PingPeer, checksum, icmp_echo, ipv4

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
MAC_C = bytes.fromhex("020000000003")
ECHO_FRAME = 14 + 20 + 8 + 56  # ping's default 56 data bytes: a 98-byte frame


def frame(dst: bytes, src: bytes, payload: bytes = b"hello", ethertype: int = 0x88B5) -> bytes:
    return dst + src + ethertype.to_bytes(2, "big") + payload


def two_peers(**switch_args):
    env = simpy.Environment()
    switch = Switch(env, seed=switch_args.pop("seed", 1), **switch_args)
    a = PingPeer(env, switch, "10.0.0.1", MAC_A, name="a")
    b = PingPeer(env, switch, "10.0.0.2", MAC_B, name="b")
    return env, switch, a, b


# -- ping between two peers ---------------------------------------------------


def test_two_peers_ping_each_other_rtt_exact():
    env, _switch, a, b = two_peers(latency_ns=5_000, bandwidth_bps=1_000_000_000)
    p1 = a.ping("10.0.0.2", 100, interval_ns=1_000_000)

    def later():  # b starts half an interval later, so no frames meet on a link
        yield env.timeout(500_000)
        return (yield b.ping("10.0.0.1", 50, interval_ns=2_000_000))

    p2 = env.process(later())
    env.run()
    # One hop = latency + 98 bytes * 8 bits at 1 Gb/s = 5000 + 784 ns; a round trip is two.
    assert serialisation_ns(ECHO_FRAME, 1_000_000_000) == 784
    for proc, count in ((p1, 100), (p2, 50)):
        res = proc.value
        assert (res.sent, res.received, res.duplicates, res.loss) == (count, count, 0, 0.0)
        assert res.rtts_ns == [2 * (5_000 + 784)] * count
        assert res.replied_seqs == list(range(1, count + 1))
        assert res.done
    assert a.results is p1.value and b.results is p2.value
    assert p1.value.summary() == (
        "100 packets transmitted, 100 received, 0% packet loss, "
        "rtt min/avg/max = 11.568/11.568/11.568 us"
    )
    assert a.echo_replies_sent == 50 and b.echo_replies_sent == 100


def test_rtt_with_default_parameters():
    env, _switch, a, _b = two_peers()
    res = env.run(a.ping("10.0.0.2", 3))
    # 10 Gb/s: 784 bits take 78.4 ns, rounded up to 79; latency 5 us.
    assert res.rtts_ns == [2 * (5_000 + 79)] * 3 == [10_158] * 3


def test_ping_timeline():
    """ARP first (42-byte frames), then one echo per interval; ping ends at the last reply."""
    env, _switch, a, _b = two_peers(latency_ns=1_000, bandwidth_bps=1_000_000_000)
    proc = a.ping("10.0.0.2", 3, interval_ns=100_000)
    env.run(proc)  # (its unfired timeouts would carry a bare run() on to 1 s)
    arp_rtt = 2 * (1_000 + 42 * 8)
    echo_rtt = 2 * (1_000 + ECHO_FRAME * 8)
    assert proc.value.rtts_ns == [echo_rtt] * 3
    assert env.now == arp_rtt + 2 * 100_000 + echo_rtt
    assert a.arp_table == {bytes([10, 0, 0, 2]): MAC_B}


def test_per_link_parameters():
    env = simpy.Environment()
    switch = Switch(env, seed=0, latency_ns=1_000, bandwidth_bps=1_000_000_000)
    a = PingPeer(env, switch, "10.0.0.1", MAC_A, latency_ns=10_000)
    PingPeer(env, switch, "10.0.0.2", MAC_B, bandwidth_bps=100_000_000, name="b")
    res = env.run(a.ping("10.0.0.2", 2))
    # request: b's link (1 us + 7840 ns at 100 Mb/s); reply: a's link (10 us + 784 ns).
    assert res.rtts_ns == [1_000 + 7_840 + 10_000 + 784] * 2


def test_unreachable_target_and_summary():
    env, _switch, a, _b = two_peers()
    res = env.run(a.ping("10.0.0.9", 5, arp_timeout_ns=1_000_000, arp_tries=2))
    assert res.unreachable and res.sent == 0 and res.loss == 1.0
    assert env.now == 2_000_000
    assert "0 packets transmitted" in res.summary() and "unreachable" in res.summary()


def test_ping_argument_errors():
    _env, _switch, a, _b = two_peers()
    with pytest.raises(NetError, match="count"):
        a.ping("10.0.0.2", 0)
    with pytest.raises(NetError, match="interval_ns"):
        a.ping("10.0.0.2", 1, interval_ns=0.5)
    with pytest.raises(NetError, match="not an IPv4 address"):
        a.ping("10.0.0.300", 1)
    a.ping("10.0.0.2", 1)
    with pytest.raises(NetError, match="already pinging"):
        a.ping("10.0.0.2", 1)


# -- learning ------------------------------------------------------------------


def test_learning_switch():
    env = simpy.Environment()
    switch = Switch(env, seed=0)
    a, b, c = (Nic(switch, n, m) for n, m in (("a", MAC_A), ("b", MAC_B), ("c", MAC_C)))
    a.send(frame(MAC_B, MAC_A, b"first"))  # b unknown: flooded to b and c
    env.run()
    assert (a.pending, b.pending, c.pending) == (0, 1, 1)
    b.send(frame(MAC_A, MAC_B, b"reply"))  # a learned from the first frame: only a
    env.run()
    assert (a.pending, b.pending, c.pending) == (1, 1, 1)
    a.send(frame(MAC_B, MAC_A, b"second"))  # b now learned: only b
    env.run()
    assert (a.pending, b.pending, c.pending) == (1, 2, 1)
    assert [b.recv(), b.recv(), b.recv()] == [
        frame(MAC_B, MAC_A, b"first"),
        frame(MAC_B, MAC_A, b"second"),
        None,
    ]
    assert c.recv() == frame(MAC_B, MAC_A, b"first") and c.recv() is None
    assert switch.mac_table == {MAC_A: 0, MAC_B: 1}
    a.send(frame(MAC_A, MAC_A))  # to its own port: filtered
    a.send(frame(b"\xff" * 6, MAC_A))  # broadcast: flooded
    a.send(frame(bytes.fromhex("01005e000001"), MAC_A))  # multicast: flooded
    env.run()
    assert switch.stats() == {
        "frames_in": 6,
        "bytes_in": 19 + 19 + 20 + 19 + 19 + 19,
        "flooded": 3,
        "filtered": 1,
        "copies": 2 + 1 + 1 + 0 + 2 + 2,
        "delivered": 8,
        "lost": 0,
        "in_flight": 0,
    }


def test_group_source_address_is_not_learned():
    env = simpy.Environment()
    switch = Switch(env, seed=0)
    a = Nic(switch, "a", MAC_A)
    Nic(switch, "b", MAC_B)
    a.send(frame(MAC_B, b"\xff" * 6))
    assert switch.mac_table == {}


def test_busy_link_queues_frames():
    """Two frames for one port at once: the second waits for the first to be serialised."""
    env = simpy.Environment()
    switch = Switch(env, seed=0, latency_ns=1_000, bandwidth_bps=8_000_000_000)  # 1 ns/byte
    a, b = Nic(switch, "a", MAC_A), Nic(switch, "b", MAC_B)
    c = Nic(switch, "c", MAC_C)
    arrivals = []

    def receiver():
        while len(arrivals) < 2:
            yield c.wait_frame()
            while (f := c.recv()) is not None:
                arrivals.append((env.now, f[6:12]))

    env.process(receiver())
    a.send(frame(MAC_C, MAC_A, bytes(986)))  # 1000 bytes
    b.send(frame(MAC_C, MAC_B, bytes(486)))  # 500 bytes
    env.run()
    assert arrivals == [(1_000 + 1_000, MAC_A), (1_000 + 1_000 + 500, MAC_B)]


# -- loss ----------------------------------------------------------------------


def lost_seqs(seed: int, loss: float) -> list[int]:
    env, switch, a, _b = two_peers(seed=seed, loss=loss)
    res = env.run(a.ping("10.0.0.2", 300, arp_tries=50, timeout_ns=10_000_000))
    assert res.received + len(res.lost_seqs) == res.sent == 300
    stats = switch.stats()
    assert stats["copies"] == stats["delivered"] + stats["lost"]
    return res.lost_seqs


def test_loss_is_deterministic_from_the_seed():
    first = lost_seqs(7, 0.2)
    assert first == lost_seqs(7, 0.2)
    assert first != lost_seqs(8, 0.2)
    # A round trip crosses two lossy copies: expect about 1 - 0.8^2 = 36% lost.
    assert 0.25 < len(first) / 300 < 0.47
    assert lost_seqs(7, 0.0) == []


def test_loss_does_not_touch_the_global_random():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    lost_seqs(3, 0.5)
    assert random.random() == expected


def test_total_loss():
    env, _switch, a, _b = two_peers(loss=1.0)
    res = env.run(a.ping("10.0.0.2", 2, arp_timeout_ns=1_000, arp_tries=1))
    assert res.unreachable


# -- pcap ----------------------------------------------------------------------


def run_ping_with_pcap(path, count=20):
    writer = PcapWriter(path)
    env, _switch, a, _b = two_peers(latency_ns=3_000, bandwidth_bps=1_000_000_000, pcap=writer)
    res = env.run(a.ping("10.0.0.2", count, interval_ns=1_234_567))
    writer.close()
    return res, writer


def test_pcap_read_by_scapy(tmp_path):
    path = tmp_path / "ping.pcap"
    _res, writer = run_ping_with_pcap(path)
    packets = rdpcap(str(path))
    # ARP request + reply, then 20 requests + 20 replies.
    assert len(packets) == writer.frames == 42
    arp_req, arp_rep = packets[0], packets[1]
    assert (
        arp_req[ARP].op == 1
        and arp_req[ARP].pdst == "10.0.0.2"
        and arp_req.dst == "ff:ff:ff:ff:ff:ff"
    )
    assert (
        arp_rep[ARP].op == 2
        and arp_rep[ARP].psrc == "10.0.0.2"
        and arp_rep[ARP].hwsrc == "02:00:00:00:00:02"
    )
    # Timestamps are simulated ns, exact: ARP reply leaves b when the request reaches it.
    arp_hop = 3_000 + 42 * 8
    echo_rtt = 2 * (3_000 + ECHO_FRAME * 8)
    times = [int(Decimal(p.time) * 1_000_000_000) for p in packets]
    expected = [0, arp_hop]
    for i in range(20):
        sent = 2 * arp_hop + i * 1_234_567
        expected += [sent, sent + echo_rtt // 2]
    assert times == expected
    for i, p in enumerate(packets[2:]):
        assert p[ICMP].type == (8 if i % 2 == 0 else 0)
        assert p[ICMP].seq == i // 2 + 1
        assert len(p) == ECHO_FRAME


def test_pcap_epoch_and_header(tmp_path):
    path = tmp_path / "e.pcap"
    with PcapWriter(path, epoch_ns=1_767_225_600 * 10**9) as w:
        w.write(1_500_000_001, frame(MAC_B, MAC_A))
    data = path.read_bytes()
    assert data[:4] == bytes.fromhex("4d3cb2a1")  # 0xa1b23c4d, little-endian
    assert int.from_bytes(data[20:24], "little") == 1  # Ethernet
    (p,) = rdpcap(str(path))
    assert Decimal(p.time) == Decimal("1767225601.500000001")
    assert bytes(p) == frame(MAC_B, MAC_A)


def test_pcap_read_by_tshark(tmp_path):
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed; scapy reading is tested above")
    path = tmp_path / "ping.pcap"
    run_ping_with_pcap(path, count=5)
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "_ws.col.Protocol",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    rows = [line.split("\t") for line in out if line]
    assert len(rows) == 12
    assert [r[1] for r in rows[:2]] == ["ARP", "ARP"] and {r[1] for r in rows[2:]} == {"ICMP"}
    assert Decimal(rows[1][0]) == Decimal(3_000 + 42 * 8) / 10**9


# -- encodings checked by scapy -------------------------------------------------


def test_frames_parse_and_checksums_match_scapy():
    env, switch, a, _b = two_peers()
    captured = []
    original = switch.send
    switch.send = lambda port, f: (captured.append(f), original(port, f))[1]
    env.run(a.ping("10.0.0.2", 3, size=57))  # odd size: checksum over an odd length
    assert len(captured) == 8
    for raw in captured[2:]:
        pkt = Ether(raw)
        ip, icmp = pkt[IP], pkt[ICMP]
        sent_ip, sent_icmp = ip.chksum, icmp.chksum
        # scapy recomputes checksums when the fields are cleared
        del ip.chksum, icmp.chksum
        again = Ether(bytes(pkt))
        assert (again[IP].chksum, again[ICMP].chksum) == (sent_ip, sent_icmp)
        assert ip.version == 4 and ip.ihl == 5 and ip.ttl == 64 and ip.flags == "DF"
        assert ip.len == 20 + 8 + 57 and len(icmp.payload) == 57


def test_encoders_against_scapy_builders():
    data = bytes(range(33))
    ours = ipv4(
        bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 1, icmp_echo(8, 0x1234, 7, data), ident=99
    )
    theirs = (
        IP(src="10.0.0.1", dst="10.0.0.2", id=99, flags="DF", ttl=64)
        / ICMP(type=8, id=0x1234, seq=7)
        / data
    )
    assert ours == bytes(theirs)
    assert checksum(ours[:20]) == 0


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200) | st.sampled_from([b"", b"\0\0", b"\xff\xff" * 5, b"\xff"]))
def test_checksum_matches_scapy(data):
    assert checksum(data) == scapy_checksum(data)


def test_peer_answers_a_scapy_ping_and_ignores_bad_checksums():
    env = simpy.Environment()
    switch = Switch(env, seed=0)
    PingPeer(env, switch)
    guest = Nic(switch, "service0", MAC_B)
    arp_req = Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC_B) / ARP(
        op=1, hwsrc=MAC_B, psrc="10.0.0.2", pdst="10.0.0.1"
    )
    guest.send(bytes(arp_req))
    echo = (
        Ether(dst=MAC_A, src=MAC_B)
        / IP(src="10.0.0.2", dst="10.0.0.1")
        / ICMP(id=5, seq=9)
        / b"abc"
    )
    guest.send(bytes(echo))
    bad = bytearray(bytes(echo))
    bad[-1] ^= 0xFF  # ICMP checksum no longer matches
    guest.send(bytes(bad))
    env.run()
    reply_arp = Ether(guest.recv())
    assert reply_arp[ARP].op == 2 and reply_arp[ARP].hwsrc == "02:00:00:00:00:01"
    assert reply_arp[ARP].psrc == "10.0.0.1" and reply_arp.dst == "02:00:00:00:00:02"
    reply = Ether(guest.recv())
    assert reply[ICMP].type == 0 and (reply[ICMP].id, reply[ICMP].seq) == (5, 9)
    assert bytes(reply[ICMP].payload) == b"abc" and reply[IP].dst == "10.0.0.2"
    assert guest.recv() is None


def _echo_reply_of(request: bytes) -> bytes | None:
    """What the peer sends back for one frame from MAC_B, or None."""
    env = simpy.Environment()
    switch = Switch(env, seed=0)
    PingPeer(env, switch)
    guest = Nic(switch, "service0", MAC_B)
    guest.send(request)
    env.run()
    return guest.recv()


def _echo_request(ident: int, seq: int, data: bytes, options: bytes = b"") -> bytes:
    icmp = icmp_echo(8, ident, seq, data)
    ihl = 5 + len(options) // 4
    header = bytearray(
        bytes([0x40 | ihl, 0, 0, 0, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1]) + options
    )
    header[2:4] = (len(header) + len(icmp)).to_bytes(2, "big")
    header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
    return MAC_A + MAC_B + b"\x08\x00" + bytes(header) + icmp


@settings(max_examples=300, deadline=None)
@given(
    ident=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    data=st.binary(max_size=300),
    options=st.sampled_from([b"", b"\x01\x01\x01\x00", bytes(8)]),
)
def test_peer_echo_reply_is_the_encoders_reply(ident, seq, data, options):
    """The peer builds its reply in one pass (headers packed at once, the ICMP
    checksum derived from the request's): the bytes are those of the encoders."""
    reply = _echo_reply_of(_echo_request(ident, seq, data, options))
    # The peer's first IPv4 packet has ident 1.
    expected = MAC_B + MAC_A + b"\x08\x00" + ipv4(
        bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 1, icmp_echo(0, ident, seq, data), ident=1
    )
    assert reply == expected


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([0, 8]),
    ident=st.integers(0, 0x1FFFF),
    seq=st.integers(0, 0x1FFFF),
    data=st.binary(max_size=300) | st.sampled_from([b"", bytes(7), b"\xff" * 9]),
)
@example(kind=0, ident=0, seq=0, data=bytes(7))  # the message sums to 0: checksum 0xffff
@example(kind=0, ident=0xFFFF, seq=0, data=b"")  # sums to 0xffff: checksum 0
def test_peer_echo_frames_are_the_encoders_frames(kind, ident, seq, data):
    """Requests the peer sends (checksums from word sums) match the encoders, byte for byte."""
    env = simpy.Environment()
    peer = PingPeer(env, Switch(env, seed=0))
    ours = peer._echo_frame(MAC_B, bytes([10, 0, 0, 2]), kind, ident, seq, data)
    expected = MAC_B + MAC_A + b"\x08\x00" + ipv4(
        bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 1, icmp_echo(kind, ident, seq, data), ident=1
    )
    assert ours == expected


def test_peer_echo_reply_checksum_when_the_sum_is_ambiguous():
    """Requests whose reply sums to 0 (mod 0xffff): the checksum is summed again."""
    # All-zero reply message: its checksum is 0xffff; and one whose sum is 0 mod 0xffff.
    for ident, seq, data in ((0, 0, bytes(6)), (0xFFFF, 0, b""), (0x1234, 0xEDCB, b"")):
        reply = _echo_reply_of(_echo_request(ident, seq, data))
        icmp = reply[34:]
        assert icmp[:2] == b"\0\0" and checksum(icmp) == 0
        assert icmp[2:4] == checksum(b"\0\0\0\0" + icmp[4:]).to_bytes(2, "big")


def test_peer_pings_a_guest_nic_that_waits_in_simulated_time():
    """A guest-like process blocks on wait_frame and answers with scapy-built frames."""
    env = simpy.Environment()
    switch = Switch(env, seed=0, latency_ns=2_000, bandwidth_bps=1_000_000_000)
    peer = PingPeer(env, switch)
    nic = Nic(switch, "service0", MAC_B)
    guest_work_ns = 700

    def guest():
        while True:
            yield nic.wait_frame()
            yield env.timeout(guest_work_ns)
            while (raw := nic.recv()) is not None:
                pkt = Ether(raw)
                if ARP in pkt and pkt[ARP].op == 1 and pkt[ARP].pdst == "10.0.0.2":
                    nic.send(
                        bytes(
                            Ether(dst=pkt.src, src=MAC_B)
                            / ARP(
                                op=2,
                                hwsrc=MAC_B,
                                psrc="10.0.0.2",
                                hwdst=pkt.src,
                                pdst=pkt[ARP].psrc,
                            )
                        )
                    )
                elif ICMP in pkt and pkt[ICMP].type == 8:
                    nic.send(
                        bytes(
                            Ether(dst=pkt.src, src=MAC_B)
                            / IP(src="10.0.0.2", dst=pkt[IP].src)
                            / ICMP(type=0, id=pkt[ICMP].id, seq=pkt[ICMP].seq)
                            / bytes(pkt[ICMP].payload)
                        )
                    )

    env.process(guest())
    proc = peer.ping("10.0.0.2", 10, interval_ns=50_000)
    env.run(proc)
    hop = 2_000 + ECHO_FRAME * 8
    assert proc.value.received == 10
    # scapy's reply has IP flags 0 and id 1: same length, so the same hop time.
    assert proc.value.rtts_ns == [2 * hop + guest_work_ns] * 10


# -- NIC -----------------------------------------------------------------------


def test_mtu_errors():
    env = simpy.Environment()
    switch = Switch(env, seed=0)
    nic = Nic(switch, "n", MAC_A, mtu=1500)
    nic.send(bytes(1514))
    with pytest.raises(
        NetError, match="1515-byte frame is longer than n's MTU allows \\(1514 bytes\\)"
    ):
        nic.send(bytes(1515))
    with pytest.raises(NetError, match="shorter than the 14-byte Ethernet header"):
        nic.send(bytes(13))
    jumbo = Nic(switch, "j", MAC_B, mtu=9000)
    jumbo.send(frame(MAC_A, MAC_B, bytes(8000)))
    env.run()
    assert nic.stats()["rx_dropped"] == 1 and nic.pending == 0  # too big for n
    assert nic.tx_frames == 1 and nic.tx_bytes == 1514
    with pytest.raises(NetError, match="6 bytes"):
        Nic(switch, "bad", b"\x01\x02")
    with pytest.raises(NetError, match="mtu"):
        Nic(switch, "bad", MAC_C, mtu=10)


def test_wait_frame_event_semantics():
    env = simpy.Environment()
    switch = Switch(env, seed=0, latency_ns=1_000, bandwidth_bps=8_000_000_000)
    tx, rx = Nic(switch, "tx", MAC_A), Nic(switch, "rx", MAC_B)
    log = []

    def waiter(label, timeout):
        ev = rx.wait_frame()
        log.append((label, "waits", env.now, ev.triggered))
        got = yield ev | env.timeout(timeout)
        log.append((label, "woke", env.now, ev in got and got[ev] is rx))

    def sender():
        yield env.timeout(10_000)
        tx.send(frame(MAC_B, MAC_A, bytes(86)))  # 100 bytes: arrives 1100 ns later

    env.process(waiter("short", 5_000))
    env.process(waiter("long", 50_000))
    env.process(sender())
    env.run()
    assert log == [
        ("short", "waits", 0, False),
        ("long", "waits", 0, False),
        ("short", "woke", 5_000, False),  # timed out
        ("long", "woke", 11_100, True),  # the frame arrived
    ]
    # A frame is waiting: the event is already triggered.
    ev = rx.wait_frame()
    assert ev.triggered and ev.value is rx
    assert rx.recv() is not None and rx.recv() is None
    assert not rx.wait_frame().triggered
    assert rx.wait_frame() is rx.wait_frame()  # waiters share one event


def test_bounded_queue_counts_drops():
    env = simpy.Environment()
    switch = Switch(env, seed=0)
    tx, rx = Nic(switch, "tx", MAC_A), Nic(switch, "rx", MAC_B, queue_limit=3)
    for i in range(5):
        tx.send(frame(MAC_B, MAC_A, bytes([i])))
    env.run()
    assert rx.stats() == {
        "tx_frames": 0,
        "tx_bytes": 0,
        "rx_frames": 3,
        "rx_bytes": 45,
        "rx_dropped": 2,
        "pending": 3,
    }
    assert [rx.recv()[-1] for _ in range(3)] == [0, 1, 2]  # FIFO, the newest were dropped


def test_nic_and_switch_save_restore():
    env = simpy.Environment()
    switch = Switch(env, seed=5, latency_ns=1_000, loss=0.5)
    a, b = Nic(switch, "a", MAC_A), Nic(switch, "b", MAC_B)
    for i in range(4):
        a.send(frame(MAC_B, MAC_A, bytes([i])))
    env.run(until=500)  # frames in flight
    sw_state, b_state = switch.save(), b.save()
    switch.restore(sw_state)  # while deliveries are pending: each still arrives once
    assert sw_state["in_flight"] and all(d > 0 for d, _port, _f in sw_state["in_flight"])
    env.run()
    after_first = [b.recv() for _ in range(b.pending)]
    later_loss = [switch._rng.random() for _ in range(3)]
    # Back to the snapshot: the same frames arrive, the RNG continues identically.
    switch.restore(sw_state)
    b.restore(b_state)
    assert switch.in_flight == len(sw_state["in_flight"]) and b.pending == 0
    env.run()
    assert [b.recv() for _ in range(b.pending)] == after_first
    assert [switch._rng.random() for _ in range(3)] == later_loss
    # Queued frames survive save/restore and wake a waiter.
    switch.loss = 0.0
    a.send(frame(MAC_B, MAC_A, b"queued"))
    env.run()
    state = b.save()
    assert b.recv() == frame(MAC_B, MAC_A, b"queued")
    ev = b.wait_frame()
    b.restore(state)
    assert ev.triggered and b.recv() == frame(MAC_B, MAC_A, b"queued")
    with pytest.raises(NetError, match="does not match"):
        a.restore(state)


def test_switch_parameter_errors():
    env = simpy.Environment()
    with pytest.raises(NetError, match="loss"):
        Switch(env, seed=0, loss=1.5)
    with pytest.raises(NetError, match="bandwidth_bps"):
        Switch(env, seed=0, bandwidth_bps=0)
    with pytest.raises(NetError, match="latency_ns"):
        Switch(env, seed=0, latency_ns=1.5)
    with pytest.raises(TypeError):
        Switch(env)  # the seed is required
    assert parse_mac("02:00:00:00:00:0a") == bytes.fromhex("02000000000a")
    with pytest.raises(NetError, match="not a MAC address"):
        parse_mac("02:00:00:00:00")


# -- random frames through the switch --------------------------------------------

MACS = [MAC_A, MAC_B, MAC_C, bytes.fromhex("020000000004")]
DESTS = [*MACS, b"\xff" * 6, bytes.fromhex("333300000001"), bytes.fromhex("0a0b0c0d0e0f")]

random_sends = st.lists(
    st.tuples(
        st.integers(0, 3),  # sending NIC
        st.sampled_from(DESTS),
        st.integers(0, 1600),  # payload length; some too long for the MTU
        st.integers(0, 20_000),  # gap before this send, ns
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    sends=random_sends,
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.1, 0.5]),
    queue_limit=st.integers(1, 8),
    bandwidth=st.sampled_from([1_000_000, 100_000_000, 10_000_000_000]),
)
def test_random_frames_conserved(sends, seed, loss, queue_limit, bandwidth):
    env = simpy.Environment()
    switch = Switch(env, seed=seed, loss=loss, bandwidth_bps=bandwidth, latency_ns=1_000)
    nics = [Nic(switch, f"n{i}", mac, queue_limit=queue_limit) for i, mac in enumerate(MACS)]
    refused = 0

    def driver():
        nonlocal refused
        for sender, dst, n, gap in sends:
            yield env.timeout(gap)
            try:
                nics[sender].send(frame(dst, MACS[sender], bytes(n)))
            except NetError:
                refused += 1
                assert n + 14 > 1514

    env.process(driver())
    env.run()
    stats = switch.stats()
    assert stats["frames_in"] + refused == len(sends)
    assert stats["in_flight"] == 0
    assert stats["copies"] == stats["delivered"] + stats["lost"]
    received = sum(nic.rx_frames + nic.rx_dropped for nic in nics)
    assert received == stats["delivered"]
    # Each frame is filtered, or goes to one port, or is flooded to the other three.
    assert stats["copies"] == 3 * stats["flooded"] + (
        stats["frames_in"] - stats["flooded"] - stats["filtered"]
    )
    assert sum(nic.pending for nic in nics) == sum(nic.rx_frames for nic in nics)
