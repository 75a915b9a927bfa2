"""Room 4: evaluation — did the aligned model get better, by the critic, the oracle, people?"""
