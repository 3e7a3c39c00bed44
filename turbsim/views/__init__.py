"""What is shown of generated data: preview sheets, field pictures, Monte Carlo diagnostics
against the theory, where fields fold, and exports to layouts other tools read.
"""
