"""The [traffic] section: the trace parsers (Azure Functions trace 2019 format, timestamps), the synthetic patterns,
the replay window, and profile errors that name the file, the key and the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfdesk.controllers.profile import ProfileError, load_profile
from perfdesk.controllers.traffic import (
    TraceError,
    TrafficSection,
    arrivals,
    minute_counts,
    read_azure_counts,
    read_timestamps,
    window,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "profiles" / "traces" / "sample_invocations_per_function.csv"
HEADER = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(m) for m in range(1, 1441))


def _azure(path: Path, rows: list[tuple[str, list[int]]]) -> Path:
    lines = [HEADER] + [",".join(["o", "a", fn, "http"] + [str(c) for c in counts]) for fn, counts in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bundled_sample_is_in_the_azure_format():
    header = SAMPLE.read_text().splitlines()[0].split(",")
    assert header[:4] == ["HashOwner", "HashApp", "HashFunction", "Trigger"]
    assert header[4:] == [str(m) for m in range(1, 1441)]
    total, rows = read_azure_counts(SAMPLE)
    assert rows == 3 and len(total) == 1440 and total.sum() > 5000
    one, n = read_azure_counts(SAMPLE, SAMPLE.read_text().splitlines()[2].split(",")[2][:12])
    assert n == 1 and one.sum() == 144  # the timer row: one every 10 minutes


def test_azure_counts_select_sum_and_errors(tmp_path):
    a = [0] * 1440
    a[0], a[10] = 3, 2
    b = [1] * 1440
    path = _azure(tmp_path / "d01.csv", [("fa", a), ("fb", b)])
    total, rows = read_azure_counts(path)
    assert rows == 2 and total[0] == 4 and total[10] == 3 and total.sum() == 5 + 1440
    only, _ = read_azure_counts(path, "fa")
    assert only.sum() == 5
    with pytest.raises(TraceError, match="no row whose HashFunction starts with 'zz'"):
        read_azure_counts(path, "zz")
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "\no,a,f,http,1,2\n")
    with pytest.raises(TraceError, match=r"bad.csv:2: 6 columns, the header has 1444"):
        read_azure_counts(bad)
    (tmp_path / "nohdr.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(TraceError, match=r"nohdr.csv:1: not the Azure Functions trace format"):
        read_azure_counts(tmp_path / "nohdr.csv")


def test_timestamps_plain_and_with_a_header(tmp_path):
    plain = tmp_path / "t.txt"
    plain.write_text("# arrivals\n100.5\n100.0\n103\n")
    assert read_timestamps(plain).tolist() == [0.0, 0.5, 3.0]
    azure2021 = tmp_path / "t.csv"
    azure2021.write_text("app,func,end_timestamp,duration\nx,y,10.0,0.1\nx,y,12.5,0.2\n")
    assert read_timestamps(azure2021).tolist() == [0.0, 2.5]
    broken = tmp_path / "b.csv"
    broken.write_text("1.0\n2.0\nnot-a-time\n")
    with pytest.raises(TraceError, match=r"b.csv:3: not a timestamp"):
        read_timestamps(broken)


def test_patterns_are_seeded_and_keep_their_rate():
    for pattern in ("constant", "diurnal", "bursty"):
        t = TrafficSection(pattern=pattern, rate_rps=0.2, seed=3)
        a, b = arrivals(t), arrivals(t)
        assert np.array_equal(a, b) and np.all(np.diff(a) >= 0) and a.max() < 86400
        if pattern != "bursty":
            assert abs(len(a) / 86400 - 0.2) < 0.01  # the mean rate, within Poisson noise
    diurnal = arrivals(TrafficSection(pattern="diurnal", rate_rps=1.0, peak_to_trough=4, peak_hour=14))
    per_hour = np.bincount((diurnal // 3600).astype(int), minlength=24)
    assert per_hour.argmax() in (13, 14, 15) and per_hour.max() / per_hour.min() > 2.5
    bursty = TrafficSection(pattern="bursty", rate_rps=0.1, burst_rate_rps=20, burst_s=30, bursts_per_hour=1)
    counts = minute_counts(arrivals(bursty), 86400)
    assert counts.max() > 10 * counts.mean()  # the bursts stand out of the base rate
    assert len(arrivals(TrafficSection(pattern="constant", rate_rps=0.5, arrival="constant"))) == 43200


def test_window_compresses_and_starts_at_zero():
    offsets = np.array([10.0, 70.0, 130.0, 200.0])
    assert window(offsets, 60.0, 120.0, 60.0).tolist() == [pytest.approx(10 / 60), pytest.approx(70 / 60)]
    assert len(window(offsets, 0.0, None, 1.0)) == 4


def _profile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(
        '[[targets]]\nname = "s"\nkind = "local-server"\n\n[[workloads]]\nmodel = "mobilenet_v2"\n\n' + body
    )
    return path


def test_profile_traffic_section_and_replay(tmp_path):
    trace = _azure(tmp_path / "d01.csv", [("f", [1] * 1440)])
    p = load_profile(
        _profile(
            tmp_path,
            '[traffic]\npattern = "trace"\nfile = "d01.csv"\n\n[[trials]]\nkind = "replay"\ncompress = 120\n'
            'minutes = 10\n\n[[trials]]\nkind = "idle"\ngaps_s = [1, 5]\n',
        )
    )
    assert p.traffic is not None and p.traffic.file == str(trace.resolve())  # made absolute by the loader
    replay = p.trials[0]
    assert replay.traffic is p.traffic
    from perfdesk.controllers.traffic_trials import replay_offsets

    offsets = replay_offsets(replay)
    assert len(offsets) == 10 and offsets.max() < 600 / 120


def test_profile_errors_name_file_key_and_line(tmp_path):
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, '[[trials]]\nkind = "replay"\n'))
    assert "p.toml:8: trials[0]: a replay trial needs a [traffic] section" in str(err.value)
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, '[traffic]\npattern = "trace"\n\n[[trials]]\nkind = "warm"\n'))
    assert "p.toml:8: traffic: pattern = \"trace\" needs 'file'" in str(err.value)
    (tmp_path / "bad.csv").write_text(HEADER + "\no,a,f,http,1\n")
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, '[traffic]\npattern = "trace"\nfile = "bad.csv"\n[[trials]]\nkind = "warm"\n'))
    assert "traffic: " in str(err.value) and "bad.csv:2: 5 columns, the header has 1444" in str(err.value)
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, '[traffic]\nrate_rsp = 3\n[[trials]]\nkind = "warm"\n'))
    assert "p.toml:9: traffic.rate_rsp: unknown key; did you mean 'rate_rps'?" in str(err.value)
