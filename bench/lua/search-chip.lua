-- Patient search by microchip number.
request = searchChip
