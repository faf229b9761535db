"""Tools around the product: benchmark, roofline, doctor, info and the offline demo."""
