"""Energy per streaming step, ESTIMATED from operation counts and published per-operation
energies (numpy only). Every constant and its source is in docs/energy.md; every figure this
module returns is an estimate, never a measurement.

Targets:
    digital-int   an integer accelerator running the bundle's integer step (MACs at the
                  bundle's bit widths, float32 requantization, weights and state in SRAM)
    digital-fp32  the same network in float32 (MACs, nonlinearities, weights and state in SRAM)
    crossbar      the IMSSA mapping: analog cell reads, DAC and ADC conversions counted by
                  runtime.imssa.ImssaStep, plus its digital remainder
    jetson-nano   the reference edge GPU: board power x a step latency
All energies in picojoules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Constants:
    # Horowitz, ISSCC 2014, 45 nm, 0.9 V (pJ per operation)
    int8_add: float = 0.03
    int32_add: float = 0.1
    int8_mult: float = 0.2
    int32_mult: float = 3.1
    fp32_add: float = 0.9
    fp32_mult: float = 3.7
    # Horowitz 2014: SRAM read of 64 bits from an 8 KB / 32 KB / 1 MB array; DRAM 1.3-2.6 nJ
    sram_8k_64b: float = 10.0
    sram_32k_64b: float = 20.0
    sram_1m_64b: float = 100.0
    dram_64b: float = 2000.0
    # ISAAC (Shafiee et al., ISCA 2016): 0.3 mW per 128x128 array, 100 ns read -> per cell
    cell_read: float = 0.3e-3 * 100e-9 / (128 * 128) * 1e12  # about 1.8e-3 pJ
    # ADC: Walden FOM (energy per conversion step) and Schreier FOM (dB), Murmann's survey
    adc_walden_fj: float = 5.0
    adc_schreier_db: float = 180.0
    # DAC: ISAAC's 1-bit DAC and row driver (4 mW for 1024 DACs at 10 MHz) plus a binary
    # capacitive array 2^b * C_u * V^2 (C_u = 1 fF, V = 1 V; Saberi et al., TCAS-I 2011)
    dac_driver: float = 4e-3 / (1024 * 10e6) * 1e12  # about 0.39 pJ
    dac_unit_fj: float = 1.0
    # nonlinearity in float32 (GELU, sigmoid): a polynomial/rational evaluation, fp32 MACs
    fp32_nonlinear_macs: int = 10
    # NVIDIA Jetson Nano module power modes (W)
    nano_power_w: float = 10.0
    nano_power_low_w: float = 5.0


C = Constants()


def int_mult(w_bits: int, a_bits: int, c: Constants = C) -> float:
    """An array multiplier's energy grows with the product of its operand widths (Horowitz:
    8-bit 0.2 pJ, 32-bit 3.1 pJ, ratio 15.5 for (32*32)/(8*8) = 16)."""
    return c.int8_mult * (w_bits * a_bits) / 64.0


def int_add(bits: int, c: Constants = C) -> float:
    """A ripple adder's energy grows with its width (Horowitz: 8-bit 0.03, 32-bit 0.1 pJ)."""
    return c.int32_add * bits / 32.0


def int_mac(w_bits: int, a_bits: int, c: Constants = C) -> float:
    """One multiply and one add into a 32-bit accumulator."""
    return int_mult(w_bits, a_bits, c) + int_add(32, c)


def fp32_mac(c: Constants = C) -> float:
    return c.fp32_mult + c.fp32_add


def sram_bit(capacity_bits: int, c: Constants = C) -> float:
    """Energy per bit read from the smallest memory in Horowitz's table that holds
    capacity_bits (8 KB, 32 KB, 1 MB SRAM, else DRAM)."""
    for size_bytes, e64 in ((8 << 10, c.sram_8k_64b), (32 << 10, c.sram_32k_64b),
                            (1 << 20, c.sram_1m_64b)):
        if capacity_bits <= 8 * size_bytes:
            return e64 / 64.0
    return c.dram_64b / 64.0


def adc(bits: int, c: Constants = C) -> float:
    """Energy of one conversion: the larger of the Walden bound FOM_W * 2^b and the thermal
    (Schreier) bound P/fs = (fs/2)/fs * 10^((SNDR - FOM_S)/10), SNDR = 6.02 b + 1.76 dB."""
    walden = c.adc_walden_fj * 1e-3 * 2.0**bits
    schreier = 0.5 * 10 ** ((6.02 * bits + 1.76 - c.adc_schreier_db) / 10.0) * 1e12
    return max(walden, schreier)


def dac(bits: int, c: Constants = C) -> float:
    """Energy of one conversion: driver plus binary-weighted capacitor array."""
    return c.dac_driver + c.dac_unit_fj * 1e-3 * 2.0**bits


def digital_int(costs, terms, c: Constants = C) -> dict:
    """Breakdown (pJ per step) of the integer step on a digital accelerator: every weight code,
    bias and scale read once per step, table entries once per lookup."""
    mem = sram_bit(costs.weight_total_bits + costs.state_bits, c)
    out = {
        "macs": sum(t.macs * int_mac(t.w_bits, t.a_bits, c) for t in terms),
        "requant": costs.requants * c.fp32_mult,
        "lookups": costs.lookups * costs.act_bits * mem,
        "weights": (costs.weight_total_bits - costs.table_bits) * mem,
        "state": 2 * costs.state_bits * mem,
    }
    out["total"] = sum(out.values())
    return out


def digital_fp32(costs, terms, c: Constants = C) -> dict:
    """Breakdown (pJ per step) of the same network in float32."""
    n_f32 = costs.n_weights * 32
    mem = sram_bit(n_f32 + 32 * costs.state_values, c)
    out = {
        "macs": sum(t.macs for t in terms) * fp32_mac(c),
        "nonlinear": costs.lookups * c.fp32_nonlinear_macs * fp32_mac(c),
        "weights": n_f32 * mem,
        "state": 2 * 32 * costs.state_values * mem,
    }
    out["total"] = sum(out.values())
    return out


def crossbar(per_step: dict, dac_bits: int, adc_bits: int, costs, weight_bits: int,
             c: Constants = C) -> dict:
    """Breakdown (pJ per step) of the IMSSA mapping from ImssaStep counters per step."""
    mem = sram_bit(costs.weight_total_bits + costs.state_bits, c)
    out = {
        "cells": per_step["analog_macs"] * c.cell_read,
        "dac": per_step["dac_conversions"] * dac(dac_bits, c),
        "adc": per_step["adc_conversions"] * adc(adc_bits, c),
        "digital_macs": per_step["digital_macs"] * (int_mac(weight_bits, costs.act_bits, c)
                                                    + weight_bits * mem),
        "digital_ops": per_step["digital_ops"] * c.fp32_mult,
        "state": 2 * costs.state_bits * mem,
    }
    out["total"] = sum(out.values())
    return out


def jetson_nano(latency_s: float, c: Constants = C) -> dict:
    """Board power x latency, both power modes (pJ per step)."""
    return {"total": c.nano_power_w * latency_s * 1e12,
            "low_power_mode": c.nano_power_low_w * latency_s * 1e12}


def constants() -> dict:
    return asdict(C)
