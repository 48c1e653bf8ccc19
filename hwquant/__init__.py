"""hwquant: quantized CNNs to FPGA hardware."""
